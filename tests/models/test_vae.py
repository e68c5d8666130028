"""models/vae.py: the conv VAE's encode/decode interface, its training pass and its shape check."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tgt_jax import models
from tgt_jax.models import vae as vae_lib


def test_vae_encode_decode_interface():
  vae = models.generator("conv_vae", (8, 8, 1), 12, output_range=(-1.0, 1.0))
  x = jnp.zeros((2, 8, 8, 1))
  params = vae.init(jax.random.key(0), x, jax.random.key(1))
  mean, logvar = vae.apply(params, x, method=vae.encode)
  assert mean.shape == logvar.shape == (2, 12)
  out = vae.apply(params, 10 * jax.random.normal(jax.random.key(2), (5, 12)), method=vae.decode)
  assert out.shape == (5, 8, 8, 1) and float(out.min()) >= -1 and float(out.max()) <= 1


def test_training_pass_samples_around_the_mean_with_the_rng():
  vae = vae_lib.ConvVAE((4, 6, 3), latent_dim=3, features=4, hidden=8)
  x = jax.random.uniform(jax.random.key(0), (2, 4, 6, 3))
  params = vae.init(jax.random.key(0), x, jax.random.key(1))
  recon, mean, logvar = vae.apply(params, x, jax.random.key(1))
  assert recon.shape == x.shape and mean.shape == logvar.shape == (2, 3)
  np.testing.assert_array_equal(mean, vae.apply(params, x, method=vae.encode)[0])
  again, _, _ = vae.apply(params, x, jax.random.key(1))
  other, _, _ = vae.apply(params, x, jax.random.key(2))
  np.testing.assert_array_equal(recon, again)
  assert not np.allclose(recon, other)


def test_odd_image_sides_are_named():
  vae = vae_lib.ConvVAE((7, 8, 1))
  with pytest.raises(ValueError, match=r"even image height and width, got \(7, 8, 1\)"):
    vae.init(jax.random.key(0), jnp.zeros((1, 7, 8, 1)), jax.random.key(1))
