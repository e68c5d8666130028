"""data/sources.py: one interface over in-memory data and TFDS. In memory: the student's
subset by (config, seed), batches replayed exactly by step, evaluation batches that cover a
split once. (The TFDS sources: tests/data/test_tfds_random_access.py and the e2e tests.)"""

import numpy as np
import pytest

from conftest import digits_config
from tgt_jax.data import sources


def _source(**overrides):
  return sources.make_source(digits_config(**{"data.labels_per_class": 2, "batch_size": 8,
                                              **overrides}))


def test_the_labelled_subset_is_drawn_from_train_by_the_seed(digits):
  source = _source()
  assert isinstance(source, sources.MemorySource) and source.num_classes == 10
  np.testing.assert_array_equal(source.counts, [2] * 10)
  np.testing.assert_array_equal(np.bincount(source.labelled.labels, minlength=10), [2] * 10)
  assert set(source.labelled.indices) <= set(digits.splits["train"].indices)
  again, other = _source(), _source(seed=1)
  np.testing.assert_array_equal(again.labelled.indices, source.labelled.indices)
  assert not np.array_equal(other.labelled.indices, source.labelled.indices)
  assert sources.make_source(digits_config(), with_subset=False).labelled is None


def test_batches_replay_exactly_from_any_step():
  source = _source()
  stream = source.labelled_batches(0)
  first = [next(stream) for _ in range(3)]
  resumed = next(source.labelled_batches(2))
  np.testing.assert_array_equal(resumed["image"], first[2]["image"])
  np.testing.assert_array_equal(resumed["label"], first[2]["label"])
  np.testing.assert_array_equal(
      source.labelled_batch(source.labelled_rows(2))["label"], first[2]["label"])
  unlabelled = next(source.unlabelled_batches(6, 0))["image"]
  assert unlabelled.shape == (6, 8, 8, 1)


def test_eval_batches_cover_the_split_once():
  source = _source()
  seen = sum(int(np.sum(b["mask"])) for b in source.eval_batches("test", 64))
  assert seen == len(source.dataset.splits["test"])
  assert len(source.sample("test", 5)) == 5


def test_an_unknown_dataset_is_named_with_the_in_memory_ones(tmp_path):
  config = digits_config(**{"data.name": "no_such_dataset", "data.data_dir": str(tmp_path)})
  with pytest.raises(ValueError, match=r"Unknown dataset name 'no_such_dataset': not one of "
                                       r"the in-memory datasets \['digits', 'wordnet'\]"):
    sources.make_source(config)
