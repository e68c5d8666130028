"""Datasets by name and the student's labelled subsets."""

import dataclasses
from typing import Optional

from tgt_jax.data import digits

IN_MEMORY = ("digits", "wordnet")


@dataclasses.dataclass(frozen=True)
class Dataset:
  """An in-memory dataset. `Split.images` holds the model inputs: pixels, or token ids
  (int32 [N, max_len], 0 = padding) for text, whose `image_shape` is (max_len,)."""
  splits: dict              # name → digits.Split-like (images, labels, indices)
  num_classes: int
  image_shape: tuple
  pixel_range: tuple
  input_dtype: str = "float32"        # "int32" for token ids
  vocabulary: Optional[tuple] = None  # text: token strings by id (0 = padding)
  class_names: Optional[tuple] = None


def load(name, options=None):
  """In-memory datasets (small, real) by name; `options` is config.data (or a dict)."""
  options = dict(options or {})
  if name == "digits":
    return Dataset(digits.load_splits(), digits.NUM_CLASSES, digits.IMAGE_SHAPE,
                   digits.PIXEL_RANGE)
  if name == "wordnet":
    from tgt_jax.data import wordnet  # pylint: disable=g-import-not-at-top
    return wordnet.load_dataset(directory=options.get("dir") or None,
                                max_len=options.get("max_len", wordnet.MAX_LEN),
                                vocab_size=options.get("vocab_size", wordnet.VOCAB_SIZE))
  raise ValueError(f"Unknown dataset name {name!r}; known: {list(IN_MEMORY)}.")
