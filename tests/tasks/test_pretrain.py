"""pretrain.py: masking touches only real tokens; the masked-token loss learns, and shards."""

import jax
import jax.numpy as jnp
import numpy as np

from tgt_jax import models
from tgt_jax.tasks import pretrain

from conftest import FAST_COMPILE


def test_masking_replaces_only_real_tokens_at_the_rate():
  lengths = jnp.array([20, 3, 1, 32])
  tokens = jnp.where(jnp.arange(32) < lengths[:, None], 7, 0).astype(jnp.int32)
  inputs, positions, valid = pretrain.mask_tokens(jax.random.key(0), tokens, 0.15)
  chosen = inputs == pretrain.MASK
  np.testing.assert_array_equal(chosen.sum(1), [3, 1, 1, 5])   # max(1, round(0.15 · length))
  assert not bool(jnp.any(chosen & (tokens == 0)))                 # padding is never masked
  assert bool(jnp.all(jnp.where(chosen, True, inputs == tokens)))
  picked = jnp.take_along_axis(chosen, positions, axis=1)
  np.testing.assert_array_equal(picked & valid, valid)              # positions are the masked ones
  np.testing.assert_array_equal(valid.sum(1), chosen.sum(1))


def test_masked_token_loss_is_finite_and_learnable():
  student = models.classifier("text_tiny", 5, vocab_size=30)
  tokens = jax.random.randint(jax.random.key(1), (8, 10), 3, 30).astype(jnp.int32)
  # Compiled calls (op by op, each op compiles on its own), with FAST_COMPILE: compiling is
  # most of this file's time.
  params = jax.jit(student.init, compiler_options=FAST_COMPILE)(jax.random.key(2), tokens)
  loss_fn = pretrain.masked_token_loss(student, 0.3)
  loss, aux = jax.jit(loss_fn, static_argnums=3, compiler_options=FAST_COMPILE)(
      params, {"image": tokens}, jax.random.key(3), 0)
  grads = jax.jit(jax.grad(lambda p: loss_fn(p, {"image": tokens}, jax.random.key(3), 0)[0]),
                  compiler_options=FAST_COMPILE)(params)
  assert np.isfinite(float(loss)) and 0.0 <= float(aux["masked_accuracy"]) <= 1.0
  assert float(jnp.abs(grads["params"]["mlm_bias"]).sum()) > 0


def test_masked_token_loss_runs_sharded_on_the_mesh():
  """Under the 8-device mesh (explicit sharding) the loss needs no gathers or scatters."""
  from tgt_jax import sharding  # pylint: disable=g-import-not-at-top
  mesh = sharding.make_mesh()
  student = models.classifier("text_tiny", 5, vocab_size=30)
  tokens = np.asarray(jax.random.randint(jax.random.key(1), (16, 10), 3, 30), np.int32)
  params = jax.jit(student.init, compiler_options=FAST_COMPILE)(jax.random.key(2),
                                                                jnp.asarray(tokens))
  loss_fn = pretrain.masked_token_loss(student, 0.3)
  fn = jax.jit(lambda p, t: loss_fn(p, {"image": t}, jax.random.key(3), 0)[0],
               in_shardings=(sharding.replicated(mesh), sharding.batch_sharded(mesh)),
               compiler_options=FAST_COMPILE)
  sharded = fn(sharding.replicate(mesh, params), sharding.to_global(mesh, tokens))
  unsharded = jax.jit(lambda p, t: loss_fn(p, {"image": t}, jax.random.key(3), 0)[0],
                      compiler_options=FAST_COMPILE)(params, jnp.asarray(tokens))  # one device
  np.testing.assert_allclose(sharded, unsharded, rtol=1e-5)
