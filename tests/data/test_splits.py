"""data/splits.py: the fixed stratified split of a pool into parts."""

import numpy as np

from tgt_jax.data import splits


def test_parts_are_disjoint_cover_the_pool_and_keep_each_class_in_proportion():
  labels = np.repeat(np.arange(3), [50, 30, 20])
  test, validation, train = splits.stratified_split_rows(labels, [0.2, 0.1], seed=7)
  assert not set(test) & set(validation) and not set(test) & set(train)
  assert not set(validation) & set(train)
  np.testing.assert_array_equal(np.sort(np.concatenate([test, validation, train])),
                                np.arange(100))
  assert np.bincount(labels[test]).tolist() == [10, 6, 4]
  assert np.bincount(labels[validation]).tolist() == [5, 3, 2]
  assert all(np.all(np.diff(part) > 0) for part in (test, validation, train))


def test_the_seed_fixes_the_split_and_another_seed_moves_it():
  labels = np.repeat(np.arange(4), 25)
  first = splits.stratified_split_rows(labels, [0.2], seed=1)
  again = splits.stratified_split_rows(labels, [0.2], seed=1)
  other = splits.stratified_split_rows(labels, [0.2], seed=2)
  np.testing.assert_array_equal(first[0], again[0])
  assert not np.array_equal(first[0], other[0])
