"""Digits splits and the student's subsets."""

import numpy as np
import pytest

from tgt_jax.data import digits as digits_data, subsets


def test_splits_are_fixed_disjoint_stratified_and_cover_digits(digits):
  splits = digits.splits
  index_sets = [set(s.indices.tolist()) for s in splits.values()]
  assert sum(len(s) for s in index_sets) == 1797 == len(set.union(*index_sets))
  per_class = sum(np.bincount(s.labels, minlength=10) for s in splits.values())
  for name, fraction in (("test", digits_data.TEST_FRACTION),
                         ("validation", digits_data.VALIDATION_FRACTION)):
    np.testing.assert_array_equal(np.bincount(splits[name].labels, minlength=10),
                                  np.round(fraction * per_class).astype(int), err_msg=name)
  again = digits_data.load_splits()                    # fixed: independent of any run's seed
  np.testing.assert_array_equal(again["test"].indices, splits["test"].indices)
  assert splits["train"].images.min() >= 0.0 and splits["train"].images.max() <= 1.0


@pytest.mark.parametrize("k", [1, 5, 25])
def test_labels_per_class_exact_counts_from_train_only(digits, k):
  train, test = digits.splits["train"], digits.splits["test"]
  counts = subsets.student_counts(train.labels, 10, labels_per_class=k)
  rows = subsets.select_rows(train.labels, counts, seed=3)
  np.testing.assert_array_equal(np.bincount(train.labels[rows], minlength=10), [k] * 10)
  chosen = set(train.indices[rows].tolist())
  assert chosen.isdisjoint(test.indices.tolist())
  assert chosen.isdisjoint(digits.splits["validation"].indices.tolist())


def test_seed_varies_the_subset(digits):
  labels = digits.splits["train"].labels
  counts = subsets.student_counts(labels, 10, labels_per_class=5)
  a, b = (subsets.select_rows(labels, counts, seed=s) for s in (0, 1))
  assert not np.array_equal(a, b)
  np.testing.assert_array_equal(a, subsets.select_rows(labels, counts, seed=0))


def test_long_tail_exact_geometric_counts(digits):
  train = digits.splits["train"]
  counts = subsets.student_counts(train.labels, 10, imbalance=50.0, head_count=100)
  expected = np.maximum(1, np.round(100 * 50.0 ** (-np.arange(10) / 9))).astype(int)
  np.testing.assert_array_equal(counts, expected)
  assert counts[0] == 100 and counts[-1] == 2
  rows = subsets.select_rows(train.labels, counts, seed=0)
  np.testing.assert_array_equal(np.bincount(train.labels[rows], minlength=10), expected)
  assert set(train.indices[rows].tolist()).isdisjoint(digits.splits["test"].indices.tolist())
  groups = subsets.class_groups(counts)
  assert groups == {"head": [0, 1, 2], "medium": [3, 4, 5, 6], "tail": [7, 8, 9]}


def test_too_many_labels_names_the_value(digits):
  labels = digits.splits["train"].labels
  with pytest.raises(ValueError, match=r"labels_per_class=500 is more than exist.*has \d+"):
    subsets.student_counts(labels, 10, labels_per_class=500)
  with pytest.raises(ValueError, match="not several"):
    subsets.student_counts(labels, 10, labels_per_class=5, imbalance=10)
  with pytest.raises(ValueError, match="imbalance must be >= 1"):
    subsets.student_counts(labels, 10, imbalance=0.5)
  with pytest.raises(ValueError, match="head_count 999"):
    subsets.student_counts(labels, 10, imbalance=10, head_count=999)
