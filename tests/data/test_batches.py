"""data/batches.py: the training stream is a function of (seed, step) and covers every epoch;
evaluation batches cover each example once."""

import numpy as np
import pytest

from tgt_jax.data import batches


def test_batch_stream_is_a_function_of_seed_and_step_and_covers_each_epoch():
  first = [batches.batch_rows(50, 64, seed=7, step=s) for s in range(5)]
  again = [batches.batch_rows(50, 64, seed=7, step=s) for s in range(5)]
  np.testing.assert_array_equal(np.stack(first), np.stack(again))
  stream = np.concatenate(first)                  # 320 positions = 6.4 epochs of 50
  for epoch in range(6):
    assert sorted(stream[epoch * 50:(epoch + 1) * 50].tolist()) == list(range(50))
  assert not np.array_equal(batches.batch_rows(50, 64, seed=8, step=0), first[0])


def test_eval_batches_cover_once_with_padding():
  seen = []
  for rows, valid in batches.eval_batches(10, 4):
    assert len(rows) == 4
    seen.extend(rows[valid].tolist())
  assert seen == list(range(10))


def test_an_empty_dataset_has_no_batches():
  with pytest.raises(ValueError, match="empty dataset"):
    batches.batch_rows(0, 4, seed=0, step=0)
  assert list(batches.eval_batches(0, 4)) == []
