"""Classifiers used as students and as labelers: an MLP and plain ConvNets.

No batch statistics (no BatchNorm), so every model is a pure function of
(params, x) and each example's output depends on that example only; the
per-example gradients that exploration takes rely on that.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp


class MLP(nn.Module):
  """Flatten → Dense+ReLU blocks → logits."""
  num_classes: int
  hidden: Sequence[int] = (32,)

  @nn.compact
  def __call__(self, x):
    x = x.reshape((x.shape[0], -1))
    for width in self.hidden:
      x = nn.relu(nn.Dense(width)(x))
    return nn.Dense(self.num_classes)(x)


class ConvNet(nn.Module):
  """3×3 conv blocks (stride per block) → Dense+ReLU → logits."""
  num_classes: int
  conv_features: Sequence[int] = (16, 32)
  conv_strides: Sequence[int] = (1, 2)
  dense_features: int = 32
  dtype: Any = None             # compute dtype (e.g. bfloat16); parameters and logits float32

  @nn.compact
  def __call__(self, x):
    if len(self.conv_features) != len(self.conv_strides):
      raise ValueError(
          f"conv_features {tuple(self.conv_features)} and conv_strides "
          f"{tuple(self.conv_strides)} must have the same length.")
    for features, stride in zip(self.conv_features, self.conv_strides):
      x = nn.relu(nn.Conv(features, (3, 3), strides=stride, dtype=self.dtype)(x))
    x = x.reshape((x.shape[0], -1))
    x = nn.relu(nn.Dense(self.dense_features, dtype=self.dtype)(x))
    return nn.Dense(self.num_classes, dtype=self.dtype)(x).astype(jnp.float32)
