"""Datasets by name and the student's labelled subsets."""

import dataclasses

from tgt_jax.data import digits


@dataclasses.dataclass(frozen=True)
class Dataset:
  splits: dict              # name → digits.Split-like (images, labels, indices)
  num_classes: int
  image_shape: tuple
  pixel_range: tuple


def load(name):
  """In-memory datasets (small, real) by name."""
  if name == "digits":
    return Dataset(digits.load_splits(), digits.NUM_CLASSES, digits.IMAGE_SHAPE,
                   digits.PIXEL_RANGE)
  raise ValueError(f"Unknown dataset name {name!r}; known: ['digits'].")
