"""A small convolutional VAE: the generative teacher's encoder E and generator G.

The interface is the one a generative teacher needs inside a jitted step
(as in big_vision's GIVT): `apply(params, x, method=vae.encode)` and
`apply(params, z, method=vae.decode)`. E returns the posterior mean and
log-variance; TGT uses the mean as E(x).
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class ConvVAE(nn.Module):
  image_shape: Sequence[int]          # (H, W, C); H and W divisible by 2.
  latent_dim: int = 16
  features: int = 64
  hidden: int = 256
  output_range: Sequence[float] = (0.0, 1.0)
  dtype: Any = None             # compute dtype (e.g. bfloat16); parameters and outputs float32

  def setup(self):
    h, w, _ = self.image_shape
    if h % 2 or w % 2:
      raise ValueError(f"ConvVAE needs even image height and width, got {tuple(self.image_shape)}.")
    self.enc_conv1 = nn.Conv(self.features // 2, (3, 3), dtype=self.dtype)
    self.enc_conv2 = nn.Conv(self.features, (3, 3), strides=2, dtype=self.dtype)
    self.enc_dense = nn.Dense(self.hidden, dtype=self.dtype)
    self.enc_out = nn.Dense(2 * self.latent_dim, dtype=self.dtype)
    self.dec_dense = nn.Dense(self.hidden, dtype=self.dtype)
    self.dec_grid = nn.Dense((h // 2) * (w // 2) * self.features, dtype=self.dtype)
    self.dec_deconv = nn.ConvTranspose(self.features // 2, (3, 3), strides=(2, 2),
                                       dtype=self.dtype)
    self.dec_out = nn.Conv(self.image_shape[2], (3, 3), dtype=self.dtype)

  def encode(self, x):
    """x → (mean, logvar) of q(z|x)."""
    x = nn.relu(self.enc_conv1(x))
    x = nn.relu(self.enc_conv2(x))
    x = nn.relu(self.enc_dense(x.reshape((x.shape[0], -1))))
    mean, logvar = jnp.split(self.enc_out(x).astype(jnp.float32), 2, axis=-1)
    return mean, jnp.clip(logvar, -10.0, 10.0)

  def decode(self, z):
    """z → image in `output_range`."""
    h, w, _ = self.image_shape
    x = nn.relu(self.dec_dense(z))
    x = nn.relu(self.dec_grid(x)).reshape((z.shape[0], h // 2, w // 2, self.features))
    x = nn.relu(self.dec_deconv(x))
    lo, hi = self.output_range
    return lo + (hi - lo) * nn.sigmoid(self.dec_out(x).astype(jnp.float32))

  def __call__(self, x, rng):
    """Training pass: reparameterised sample → reconstruction, mean, logvar."""
    mean, logvar = self.encode(x)
    z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(rng, mean.shape, mean.dtype)
    return self.decode(z), mean, logvar
