"""data/memory.py: a split takes rows of its three arrays together."""

import numpy as np

from tgt_jax.data import memory


def test_take_keeps_images_labels_and_indices_aligned():
  split = memory.Split(np.arange(12).reshape(4, 3), np.array([0, 1, 0, 1], np.int32),
                       np.array([40, 41, 42, 43], np.int64))
  picked = split.take(np.array([3, 1]))
  assert len(split) == 4 and len(picked) == 2
  np.testing.assert_array_equal(picked.images, [[9, 10, 11], [3, 4, 5]])
  np.testing.assert_array_equal(picked.labels, [1, 1])
  np.testing.assert_array_equal(picked.indices, [43, 41])


def test_a_dataset_is_pixels_unless_it_says_otherwise():
  dataset = memory.Dataset({}, 10, (8, 8, 1), (0.0, 1.0))
  assert dataset.input_dtype == "float32" and dataset.vocabulary is None
