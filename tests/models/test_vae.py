"""models/vae.py: the conv VAE's encode/decode interface, its training pass and its shape check."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tgt_jax import models
from tgt_jax.models import vae as vae_lib


def _params(module, *inputs):
  """Random float32 params of `module`'s shapes, drawn in NumPy: a real init compiles every
  initializer (seconds on CPU) and these tests are about the forward pass."""
  rng = np.random.default_rng(0)
  shapes = jax.eval_shape(module.init, jax.random.key(0), *inputs)
  return jax.tree.map(lambda s: (0.3 * rng.standard_normal(s.shape)).astype(s.dtype), shapes)


def test_vae_encode_decode_interface():
  vae = models.generator("conv_vae", (8, 8, 1), 12, output_range=(-1.0, 1.0))
  x = jnp.zeros((2, 8, 8, 1))
  params = jax.jit(vae.init)(jax.random.key(0), x, jax.random.key(1))   # not op by op
  mean, logvar = jax.jit(functools.partial(vae.apply, method="encode"))(params, x)
  assert mean.shape == logvar.shape == (2, 12)
  out = jax.jit(functools.partial(vae.apply, method="decode"))(
      params, 10 * jax.random.normal(jax.random.key(2), (5, 12)))
  assert out.shape == (5, 8, 8, 1) and float(out.min()) >= -1 and float(out.max()) <= 1


def test_training_pass_samples_around_the_mean_with_the_rng():
  vae = vae_lib.ConvVAE((4, 6, 3), latent_dim=3, features=4, hidden=8)
  x = np.random.default_rng(1).uniform(size=(2, 4, 6, 3)).astype(np.float32)
  params = _params(vae, x, jax.random.key(1))
  train_pass = jax.jit(vae.apply)
  recon, mean, logvar = train_pass(params, x, jax.random.key(1))
  assert recon.shape == x.shape and mean.shape == logvar.shape == (2, 3)
  np.testing.assert_allclose(mean, vae.apply(params, x, method=vae.encode)[0], rtol=1e-5)
  np.testing.assert_array_equal(recon, train_pass(params, x, jax.random.key(1))[0])
  assert not np.allclose(recon, train_pass(params, x, jax.random.key(2))[0])


def test_odd_image_sides_are_named():
  vae = vae_lib.ConvVAE((7, 8, 1))
  with pytest.raises(ValueError, match=r"even image height and width, got \(7, 8, 1\)"):
    vae.init(jax.random.key(0), jnp.zeros((1, 7, 8, 1)), jax.random.key(1))
