"""Encoder E and generator G with BigBiGAN's interface, for a teacher built from parts.

BigBiGAN (Donahue & Simonyan 2019), the paper's image teacher, has E: a
ResNet-50 + MLP mapping a 256 px image to a 120-d latent, and G: a BigGAN
mapping a 120-d latent to a 128×128×3 image in [-1, 1]. These modules have the
same interface (shapes, ranges, defaults) so the rest of tgt_jax can be built
and tested against it; they are not weight-compatible with the released
BigBiGAN (no conditional BatchNorm, no hierarchical latent split, no spectral
norm): users train their own or convert into these modules. No layer mixes
examples (GroupNorm, never BatchNorm), because exploration differentiates
each synthetic example through G on its own.
"""

import math
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from tgt_jax.models.resnet import ResNet, group_norm


class Encoder(nn.Module):
  """image → latent: a GroupNorm ResNet trunk, then an MLP (E(x) is deterministic).

  `resolution` is the input size the encoder expects (it is fully convolutional,
  so the teacher resizes images to it rather than the module enforcing it).
  """
  latent_dim: int = 120
  resolution: int = 256
  stage_sizes: Sequence[int] = (3, 4, 6, 3)
  width: float = 1.0            # multiplies the trunk's channels (64 in stage 1 at 1.0)
  mlp_dim: int = 4096
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    h = ResNet(None, stage_sizes=self.stage_sizes, width=self.width, dtype=self.dtype,
               name="trunk")(x)
    h = nn.relu(nn.Dense(self.mlp_dim, dtype=self.dtype, name="mlp_hidden")(h))
    return nn.Dense(self.latent_dim, dtype=self.dtype, name="mlp_out")(h).astype(jnp.float32)


class _UpBlock(nn.Module):
  """BigGAN-style residual up-block: (GN, ReLU, ×2 up, 3×3) twice, 1×1 on the skip."""
  features: int
  dtype: Any

  @nn.compact
  def __call__(self, x):
    up = lambda a: jnp.repeat(jnp.repeat(a, 2, axis=1), 2, axis=2)   # nearest ×2
    y = nn.relu(group_norm(x.shape[-1], dtype=self.dtype, name="norm1")(x))
    y = nn.Conv(self.features, (3, 3), dtype=self.dtype, name="conv1")(up(y))
    y = nn.relu(group_norm(self.features, dtype=self.dtype, name="norm2")(y))
    y = nn.Conv(self.features, (3, 3), dtype=self.dtype, name="conv2")(y)
    return y + nn.Conv(self.features, (1, 1), dtype=self.dtype, name="skip")(up(x))


class Generator(nn.Module):
  """latent → `resolution`×`resolution`×`channels` image in `output_range`.

  Dense → 4×4 grid → log2(resolution / 4) up-blocks, halving channels towards
  the output as BigGAN does (16, 8, 4, 2, 1 × the base at 128 px).
  """
  latent_dim: int = 120
  resolution: int = 128
  width: float = 1.0            # base channels = 64 × width (those of the last block)
  channels: int = 3
  output_range: Sequence[float] = (-1.0, 1.0)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z):
    num_blocks = int(round(math.log2(self.resolution / 4))) if self.resolution >= 8 else 0
    if num_blocks < 1 or 4 * 2**num_blocks != self.resolution:
      raise ValueError(f"Generator resolution must be 4·2^k (8, 16, …, 128, 256), "
                       f"got {self.resolution}.")
    base = max(1, int(round(64 * self.width)))
    features = [base * min(16, 2**(num_blocks - 1 - i)) for i in range(num_blocks)]
    start = base * min(16, 2**num_blocks)
    x = nn.Dense(4 * 4 * start, dtype=self.dtype, name="grid")(jnp.asarray(z, self.dtype))
    x = x.reshape((z.shape[0], 4, 4, start))
    for i, f in enumerate(features):
      x = _UpBlock(f, dtype=self.dtype, name=f"up{i + 1}")(x)
    x = nn.relu(group_norm(x.shape[-1], dtype=self.dtype, name="out_norm")(x))
    x = nn.Conv(self.channels, (3, 3), dtype=self.dtype, name="out_conv")(x)
    lo, hi = self.output_range
    return lo + (hi - lo) * 0.5 * (jnp.tanh(x.astype(jnp.float32)) + 1.0)
