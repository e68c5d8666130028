"""In-memory datasets by name: scikit-learn's digits and WordNet's noun glosses."""

from tgt_jax.data import digits, wordnet
from tgt_jax.data.memory import Dataset

IN_MEMORY = ("digits", "wordnet")


def load(name, options=None):
  """In-memory datasets (small, real) by name; `options` is config.data (or a dict)."""
  if name not in IN_MEMORY:
    raise ValueError(f"Unknown dataset name {name!r}; known: {list(IN_MEMORY)}.")
  options = dict(options or {})
  if name == "digits":
    return Dataset(digits.load_splits(), digits.NUM_CLASSES, digits.IMAGE_SHAPE,
                   digits.PIXEL_RANGE)
  if name == "wordnet":
    return wordnet.load_dataset(directory=options.get("dir") or None,
                                max_len=options.get("max_len", wordnet.MAX_LEN),
                                vocab_size=options.get("vocab_size", wordnet.VOCAB_SIZE))
  raise ValueError(f"Unknown dataset name {name!r}; known: {list(IN_MEMORY)}.")
