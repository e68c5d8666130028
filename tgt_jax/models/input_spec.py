"""What a pretrained labeler expects of its input, so a teacher can convert between parts.

Published classifiers were trained on one resolution and one pixel
normalisation; feeding them the generator's range at the generator's size
silently costs accuracy. Each labeler module declares an `InputSpec`:
`__call__` takes NHWC RGB images whose pixels lie in `value_range`, ideally at
`resolution`; `mean` / `std` are the per-channel statistics (of [0, 1] pixels)
the network normalises with, inside the module or implied by the range.
"""

import dataclasses
from typing import Tuple

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class InputSpec:
  """A labeler's input: `resolution` px, pixels in `value_range`, trained with `mean` / `std`."""
  resolution: int
  value_range: Tuple[float, float]
  mean: Tuple[float, float, float]
  std: Tuple[float, float, float]

  def from_range(self, images, source_range=(0.0, 1.0)):
    """`images` with pixels in `source_range` mapped linearly into `value_range`."""
    (a, b), (c, d) = source_range, self.value_range
    if b <= a:
      raise ValueError(f"source_range {tuple(source_range)} is empty.")
    return (jnp.asarray(images) - a) * ((d - c) / (b - a)) + c

  def normalize(self, images):
    """Pixels in `value_range` → (x01 - mean) / std, what the first conv was trained on."""
    low, high = self.value_range
    x01 = (jnp.asarray(images) - low) / (high - low)
    mean, std = jnp.asarray(self.mean, x01.dtype), jnp.asarray(self.std, x01.dtype)
    return (x01 - mean) / std

  def prepare(self, images, source_range=(0.0, 1.0), resize=True):
    """NHWC `images` in `source_range` → this spec's range, resized to `resolution` if asked."""
    x = self.from_range(images, source_range)
    if resize and x.shape[1:3] != (self.resolution, self.resolution):
      shape = (x.shape[0], self.resolution, self.resolution, x.shape[3])
      x = jax.image.resize(x, shape, "bilinear", antialias=True)
    return x
