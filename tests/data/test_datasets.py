"""data/datasets.py: in-memory datasets by name."""

import pytest

from tgt_jax.data import datasets


def test_digits_is_a_ten_class_pixel_dataset(digits):
  assert (digits.num_classes, digits.image_shape, digits.pixel_range) == (10, (8, 8, 1),
                                                                          (0.0, 1.0))
  assert set(digits.splits) == {"train", "validation", "test"}
  assert digits.splits["train"].images.shape[1:] == (8, 8, 1)


def test_an_unknown_name_lists_the_known_ones():
  with pytest.raises(ValueError, match=r"Unknown dataset name 'mnist'; known: \['digits', "
                                       r"'wordnet'\]"):
    datasets.load("mnist")
