"""The in-memory containers every small dataset fills: splits of arrays, and their description."""

import dataclasses
from typing import Optional

import numpy as np


@dataclasses.dataclass(frozen=True)
class Split:
  images: np.ndarray               # model inputs: pixels [N, H, W, C] or token ids [N, L]
  labels: np.ndarray               # int32 [N]
  indices: np.ndarray              # int64 [N] rows of the original dataset (its file order)

  def __len__(self):
    return len(self.labels)

  def take(self, rows):
    return Split(self.images[rows], self.labels[rows], self.indices[rows])


@dataclasses.dataclass(frozen=True)
class Dataset:
  """An in-memory dataset. `Split.images` holds the model inputs: pixels, or token ids
  (int32 [N, max_len], 0 = padding) for text, whose `image_shape` is (max_len,)."""
  splits: dict              # name → Split (images, labels, indices)
  num_classes: int
  image_shape: tuple
  pixel_range: tuple
  input_dtype: str = "float32"        # "int32" for token ids
  vocabulary: Optional[tuple] = None  # text: token strings by id (0 = padding)
  class_names: Optional[tuple] = None
