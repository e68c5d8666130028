"""UCI handwritten digits from scikit-learn's bundled copy (no network).

1,797 8×8 grey images, 10 classes, pixels scaled to [0, 1]. The split into
train / validation / test is stratified and fixed (it does not depend on the
run's seed), so every run, method and seed is evaluated on the same test set.
The teacher trains on `train`; students see subsets of `train` (see subsets.py);
hyper-parameters are chosen on `validation`; `test` is for reporting only.
"""

import numpy as np

from tgt_jax.data.memory import Split
from tgt_jax.data.splits import stratified_split_rows

NUM_CLASSES = 10
IMAGE_SHAPE = (8, 8, 1)
PIXEL_RANGE = (0.0, 1.0)
SPLIT_SEED = 20220812              # fixed forever: changing it changes every number
TEST_FRACTION = 0.2
VALIDATION_FRACTION = 0.1


def _load_raw():
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  digits = load_digits()
  images = (digits.images.astype(np.float32) / 16.0)[..., None]
  return images, digits.target.astype(np.int32)


def load_splits():
  """{'train', 'validation', 'test'} → Split, disjoint and covering all 1,797 images."""
  images, labels = _load_raw()
  test, validation, train = stratified_split_rows(
      labels, [TEST_FRACTION, VALIDATION_FRACTION], SPLIT_SEED)
  every = np.arange(len(labels))
  return {name: Split(images[rows], labels[rows], every[rows])
          for name, rows in (("train", train), ("validation", validation), ("test", test))}
