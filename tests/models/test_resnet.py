"""GroupNorm ResNets: sizes, dtypes, and no mixing of examples (exploration needs it)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tgt_jax import models
from tgt_jax.teachers.components import random_params
from tgt_jax.models.resnet import ResNet, num_groups


def _num_params(model, shape):
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros(shape))   # no allocation
  return sum(a.size for a in jax.tree.leaves(shapes))


@pytest.mark.parametrize("name, classes, expected", [
    ("resnet50", 1000, 25_557_032),       # torchvision's ResNet-50: GroupNorm has BN's params
    ("resnet18", 1000, 11_689_512),
    ("resnet18_cifar", 10, 11_173_962)])
def test_parameter_counts(name, classes, expected):
  assert _num_params(models.classifier(name, classes), (1, 32, 32, 3)) == expected


def test_group_count_divides_channels():
  assert [num_groups(c) for c in (8, 24, 64, 256, 48)] == [8, 24, 32, 32, 24]


@pytest.fixture(scope="module")
def tiny():
  model = models.classifier("resnet_tiny", 5, dtype=jnp.bfloat16)
  x = jax.random.uniform(jax.random.key(1), (3, 24, 24, 3), minval=-1, maxval=1)
  # numpy draws: compiling Flax's initialisers takes longer on CPU than the whole test.
  return model, random_params(jax.eval_shape(model.init, jax.random.key(0), x)), x


def test_bf16_compute_keeps_float32_params_and_logits(tiny):
  model, params, x = tiny
  abstract = jax.eval_shape(model.init, jax.random.key(0), x)
  assert {a.dtype for a in jax.tree.leaves(abstract)} == {jnp.dtype(jnp.float32)}
  logits = jax.jit(model.apply)(params, x)
  assert logits.shape == (3, 5) and logits.dtype == jnp.float32
  assert np.all(np.isfinite(logits))


def test_outputs_are_per_example(tiny):
  model, params, x = tiny
  model = models.classifier("resnet_tiny", 5)     # float32: exact comparison
  apply = jax.jit(model.apply)
  changed = x.at[1].set(-x[1] + 0.5)
  before, after = apply(params, x), apply(params, changed)
  np.testing.assert_array_equal(before[0], after[0])
  np.testing.assert_array_equal(before[2], after[2])
  assert not np.allclose(before[1], after[1])


def test_convs_are_weight_standardised(tiny):
  model, params, x = tiny
  model = models.classifier("resnet_tiny", 5)
  scaled = jax.tree_util.tree_map_with_path(
      lambda path, a: 3 * a + 1 if "kernel" in jax.tree_util.keystr(path) and a.ndim == 4 else a,
      params)
  apply = jax.jit(model.apply)
  np.testing.assert_allclose(apply(params, x), apply(scaled, x), atol=1e-4)


def test_small_image_stem_keeps_resolution():
  model = ResNet(4, stage_sizes=(1, 1), bottleneck=False, width=1 / 8, small_images=True)
  x = jnp.zeros((2, 8, 8, 3))
  params = jax.eval_shape(model.init, jax.random.key(0), x)
  assert params["params"]["stem_conv"]["kernel"].shape == (3, 3, 3, 8)
  assert jax.eval_shape(model.apply, params, x).shape == (2, 4)


def test_dtype_only_for_models_that_have_one():
  with pytest.raises(ValueError, match="'mlp' has no compute dtype"):
    models.classifier("mlp", 10, dtype=jnp.bfloat16)
