"""ResNet v1.5 with GroupNorm and weight-standardised convs (as in BiT).

Exploration differentiates each synthetic example through the labeler and the
student, so no layer may mix examples: GroupNorm replaces BatchNorm (each
example is normalised on its own), with weight standardisation, which BiT
pairs with GroupNorm so that it trains as well as BatchNorm does.
`dtype` is the compute dtype (e.g. bfloat16 on TPU); parameters stay float32
and logits come back float32, so losses and softmax-KL are computed in full
precision.
"""

import functools
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax.numpy as jnp


def num_groups(channels, max_groups=32):
  """The largest group count <= `max_groups` that divides `channels`."""
  return next(g for g in range(min(max_groups, channels), 0, -1) if channels % g == 0)


class StdConv(nn.Conv):
  """Conv whose kernel is standardised (zero mean, unit variance per output channel)."""

  def param(self, name, *args, **kwargs):
    value = super().param(name, *args, **kwargs)
    if name != "kernel":
      return value
    axes = tuple(range(value.ndim - 1))   # all but the output-channel axis
    mean = jnp.mean(value, axis=axes, keepdims=True)
    var = jnp.var(value, axis=axes, keepdims=True)
    return (value - mean) / jnp.sqrt(var + 1e-10)


def group_norm(features, dtype=jnp.float32, **kwargs):
  """GroupNorm with 32 groups, or fewer when `features` has fewer channels."""
  return nn.GroupNorm(num_groups(features), dtype=dtype, **kwargs)


def conv_maker(standardize, dtype):
  """Bias-free convs (a norm follows each), weight-standardised if asked."""
  return functools.partial(StdConv if standardize else nn.Conv, use_bias=False, dtype=dtype)


class _Block(nn.Module):
  """A residual block: basic (3×3, 3×3) or bottleneck (1×1, 3×3 with stride, 1×1 ×4)."""
  features: int
  strides: int
  bottleneck: bool
  standardize: bool
  dtype: Any

  @nn.compact
  def __call__(self, x):
    conv = conv_maker(self.standardize, self.dtype)
    norm = functools.partial(group_norm, dtype=self.dtype)
    out_features = self.features * 4 if self.bottleneck else self.features
    residual = x
    if self.strides != 1 or x.shape[-1] != out_features:
      residual = conv(out_features, (1, 1), strides=self.strides, name="proj_conv")(x)
      residual = norm(out_features, name="proj_norm")(residual)
    # v1.5: a bottleneck's stride sits on its 3×3 conv, not on the first 1×1.
    if self.bottleneck:
      layers = [(self.features, 1, 1), (self.features, 3, self.strides), (out_features, 1, 1)]
    else:
      layers = [(self.features, 3, self.strides), (out_features, 3, 1)]
    y = x
    for i, (features, size, strides) in enumerate(layers, 1):
      y = conv(features, (size, size), strides=strides, name=f"conv{i}")(y)
      last = i == len(layers)
      # Zero-initialised last scale: each block starts as the identity (Goyal et al. 2017).
      y = norm(features, name=f"norm{i}",
               scale_init=nn.initializers.zeros if last else nn.initializers.ones)(y)
      y = y if last else nn.relu(y)
    return nn.relu(residual + y)


class ResNet(nn.Module):
  """ResNet v1.5; `num_classes=None` returns the pooled features (an encoder's backbone).

  `width` multiplies every layer's channels (64 in the first stage at width 1);
  `small_images` swaps the 7×7/2 stem and max-pool for one 3×3/1 conv (32 px CIFAR).
  """
  num_classes: Optional[int]
  stage_sizes: Sequence[int] = (3, 4, 6, 3)
  bottleneck: bool = True
  width: float = 1.0
  small_images: bool = False
  standardize: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    conv = conv_maker(self.standardize, self.dtype)
    norm = functools.partial(group_norm, dtype=self.dtype)
    base = max(1, int(round(64 * self.width)))
    x = jnp.asarray(x, self.dtype)
    if self.small_images:
      x = conv(base, (3, 3), name="stem_conv")(x)
    else:
      x = conv(base, (7, 7), strides=2, padding=((3, 3), (3, 3)), name="stem_conv")(x)
    x = nn.relu(norm(base, name="stem_norm")(x))
    if not self.small_images:
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    for stage, num_blocks in enumerate(self.stage_sizes):
      for block in range(num_blocks):
        x = _Block(base * 2**stage, strides=2 if stage > 0 and block == 0 else 1,
                   bottleneck=self.bottleneck, standardize=self.standardize,
                   dtype=self.dtype,
                   name=f"stage{stage + 1}_block{block + 1}")(x)
    x = jnp.mean(x, axis=(1, 2))
    if self.num_classes is None:
      return x.astype(jnp.float32)
    return nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x).astype(jnp.float32)
