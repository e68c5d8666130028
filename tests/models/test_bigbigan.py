"""models/bigbigan.py: BigBiGAN's interface at test size: E maps images to latents, G maps
latents to images in its range, and a resolution G cannot reach is named."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tgt_jax.models import bigbigan


def test_encoder_maps_images_to_float32_latents():
  encoder = bigbigan.Encoder(latent_dim=5, resolution=16, stage_sizes=(1,), width=1 / 16,
                             mlp_dim=8, dtype=jnp.bfloat16)
  x = jax.ShapeDtypeStruct((2, 16, 16, 3), jnp.float32)
  params = jax.eval_shape(encoder.init, jax.random.key(0), x)
  assert {a.dtype for a in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}
  z = jax.eval_shape(encoder.apply, params, x)
  assert z.shape == (2, 5) and z.dtype == jnp.float32


def test_generator_reaches_its_resolution_inside_its_range():
  """Params drawn in NumPy (a real init compiles every initializer, seconds on CPU)."""
  generator = bigbigan.Generator(latent_dim=4, resolution=8, width=1 / 32, channels=2,
                                 output_range=(-2.0, 3.0))
  rng = np.random.default_rng(0)
  z = 50 * rng.standard_normal((3, 4)).astype(np.float32)   # large: the range must still hold
  shapes = jax.eval_shape(generator.init, jax.random.key(0), z)
  params = jax.tree.map(lambda s: rng.standard_normal(s.shape, np.float32), shapes)
  images = np.asarray(jax.jit(generator.apply)(params, z))
  assert images.shape == (3, 8, 8, 2) and images.dtype == np.float32
  assert images.min() >= -2.0 and images.max() <= 3.0 and images.std() > 0


@pytest.mark.parametrize("resolution", [4, 12, 100])
def test_a_resolution_not_four_times_a_power_of_two_is_named(resolution):
  generator = bigbigan.Generator(latent_dim=4, resolution=resolution, width=1 / 32)
  with pytest.raises(ValueError, match=f"4·2\\^k .*got {resolution}"):
    generator.init(jax.random.key(0), jnp.zeros((1, 4)))
