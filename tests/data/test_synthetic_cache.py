"""data/synthetic_cache.py: shards by process, records by index, picks by (seed, step)."""

import json

import numpy as np
import pytest

from tgt_jax.data import synthetic_cache as cache

SAMPLES = 3


def _records(first, count):
  """Records of examples [first, first + count), each value naming its (example, sample)."""
  ids = np.repeat(np.arange(first, first + count), SAMPLES)
  samples = np.tile(np.arange(SAMPLES), count)
  return {"synthetic_image": (ids * 10 + samples)[:, None, None].astype(np.float32)
                             * np.ones((1, 2, 2), np.float32),
          "synthetic_teacher_logits": np.stack([ids, samples], 1).astype(np.float32),
          "example_id": ids.astype(np.int32), "sample_id": samples.astype(np.int32)}


def _write(directory, num_examples, processes, chunk=2):
  """Every process's shard as each process of a `processes`-process job writes it."""
  for p in range(processes):
    first, count = cache.example_range(num_examples, p, processes)
    chunks = [_records(s, min(chunk, first + count - s)) for s in range(first, first + count, chunk)]
    cache.write_shard(directory, p, processes, first, SAMPLES, chunks)
  return cache.write_manifest(directory, processes, SAMPLES, {"method": "tgt_random"})


@pytest.mark.parametrize("num_examples,processes", [(7, 2), (8, 2), (5, 3), (4, 1)])
def test_example_ranges_cover_every_example_once(num_examples, processes):
  covered = []
  for p in range(processes):
    first, count = cache.example_range(num_examples, p, processes)
    covered += list(range(first, first + count))
  assert covered == list(range(num_examples))


def test_shards_of_two_processes_hold_each_example_and_sample_once(tmp_path):
  manifest = _write(tmp_path, 7, 2)
  assert [s["num_examples"] for s in manifest["shards"]] == [4, 3]
  assert manifest["num_examples"] == 7 and manifest["samples_per_example"] == SAMPLES
  reader = cache.Reader(tmp_path)
  everything = reader.read(np.repeat(np.arange(7), SAMPLES), np.tile(np.arange(SAMPLES), 7))
  pairs = set(zip(everything["example_id"].tolist(), everything["sample_id"].tolist()))
  assert pairs == {(e, j) for e in range(7) for j in range(SAMPLES)} and len(pairs) == 21
  np.testing.assert_array_equal(everything["synthetic_image"][:, 0, 0],
                                everything["example_id"] * 10 + everything["sample_id"])
  reader.close()


def test_reads_come_back_in_the_order_asked_across_shards(tmp_path):
  _write(tmp_path, 7, 2)
  reader = cache.Reader(tmp_path)
  got = reader.read([6, 0, 4, 3], [2, 1, 0, 2])
  np.testing.assert_array_equal(got["synthetic_teacher_logits"],
                                [[6, 2], [0, 1], [4, 0], [3, 2]])
  with pytest.raises(IndexError, match="outside the cache's 7"):
    reader.read([7], [0])
  with pytest.raises(IndexError, match="3 per example"):
    reader.read([0], [3])


def test_sample_picks_are_a_function_of_seed_and_step_and_distinct_per_row():
  a = cache.sample_ids(0, 5, 16, 3, 4)
  np.testing.assert_array_equal(a, cache.sample_ids(0, 5, 16, 3, 4))
  assert not np.array_equal(a, cache.sample_ids(0, 6, 16, 3, 4))
  assert a.shape == (16, 3) and a.min() >= 0 and a.max() < 4
  assert all(len(set(row)) == 3 for row in a.tolist())


def test_synthetic_batch_keeps_each_rows_samples_together(tmp_path):
  _write(tmp_path, 4, 1)
  reader = cache.Reader(tmp_path)
  got = cache.synthetic_batch(reader, [2, 0], np.array([[1, 2], [0, 1]]))
  np.testing.assert_array_equal(got["example_id"], [2, 2, 0, 0])
  np.testing.assert_array_equal(got["sample_id"], [1, 2, 0, 1])


def test_an_unfinished_cache_is_named(tmp_path):
  first, count = cache.example_range(4, 0, 2)
  cache.write_shard(tmp_path, 0, 2, first, SAMPLES, [_records(first, count)])
  assert cache.shard_done(tmp_path, 0, 2) and not cache.shard_done(tmp_path, 1, 2)
  with pytest.raises(FileNotFoundError, match="no manifest.json.*job=synthesize"):
    cache.Reader(tmp_path)
  (tmp_path / "manifest.json").write_text(json.dumps({"format": "something else"}))
  with pytest.raises(ValueError, match="is not a 'tgt_jax synthetic cache v1' manifest"):
    cache.Reader(tmp_path)
