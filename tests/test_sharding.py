"""One sharded code path: the same TGT step on 1 device and on 8 fake CPU devices."""

import jax
import numpy as np
import pytest

from tgt_jax import models, sharding, tgt
from tgt_jax.teachers import generative
from tgt_jax.engine import state as state_lib
from tgt_jax.tasks import classification

from conftest import digits_config


def _one_step(mesh, method, teacher_dir, digits):
  config = digits_config()
  cfg = tgt.TGTConfig(method=method, steps=2, eta=0.5, num_samples=2)
  meta, tparams = generative.load(teacher_dir, (8, 8, 1), 10)
  student = models.classifier("cnn_small", 10)
  tx = state_lib.make_optimizer(config.optimizer, 10)
  params = student.init(jax.random.key(0), np.zeros((1, 8, 8, 1), np.float32))
  state = sharding.replicate(mesh, state_lib.TrainState(np.int32(0), params, tx.init(params)))
  step = classification.make_train_step(student.apply, tx, cfg, generative.as_functions(meta), mesh)
  split = digits.splits["train"]
  batch = sharding.to_global(mesh, {"image": split.images[:16], "label": split.labels[:16]})
  losses = []
  for _ in range(2):
    state, terms = step(state, sharding.replicate(mesh, tparams), batch, jax.random.key(1))
    losses.append(jax.device_get(terms))
  return losses, jax.device_get(state.params)


@pytest.mark.parametrize("method", ["tgt_random", "tgt_gradient", "tgt_gradient_input"])
def test_eight_devices_match_one_device(method, tiny_teacher_dir, digits):
  assert jax.device_count() == 8
  one, params_one = _one_step(sharding.make_mesh(jax.devices()[:1]), method, tiny_teacher_dir,
                              digits)
  eight, params_eight = _one_step(sharding.make_mesh(), method, tiny_teacher_dir, digits)
  for a, b in zip(one, eight):
    assert set(a) == set(b)
    for key in a:
      np.testing.assert_allclose(a[key], b[key], rtol=2e-5, atol=1e-6, err_msg=key)
  for a, b in zip(jax.tree.leaves(params_one), jax.tree.leaves(params_eight)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_batch_is_sharded_and_params_replicated():
  mesh = sharding.make_mesh()
  batch = sharding.to_global(mesh, {"x": np.zeros((16, 3))})
  assert batch["x"].sharding.spec == sharding.batch_sharded(mesh).spec
  assert len(batch["x"].addressable_shards) == 8
  assert batch["x"].addressable_shards[0].data.shape == (2, 3)
  params = sharding.replicate(mesh, {"w": np.ones(3)})
  assert params["w"].sharding.is_fully_replicated


def test_batch_size_not_divisible_names_the_value():
  with pytest.raises(ValueError, match=r"batch_size=12 is not divisible by the number of "
                                       r"devices \(8\)"):
    sharding.check_batch_size(12, sharding.make_mesh())


def test_mesh_for_checks_every_named_batch_size():
  assert sharding.mesh_for(batch_size=16, eval_batch_size=64).devices.size == 8
  with pytest.raises(ValueError, match=r"eval_batch_size=20 is not divisible"):
    sharding.mesh_for(batch_size=16, eval_batch_size=20)
