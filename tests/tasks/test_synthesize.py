"""tasks/synthesize.py: job=synthesize writes the cache a student streams; a resumed cached run
replays exactly; a cache made with other settings is refused by name."""

import json
import os
import shutil

import jax
import numpy as np
import pytest

from conftest import digits_config
from tgt_jax import jobs
from tgt_jax.data import synthetic_cache

SAMPLES = 4


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory, tiny_teacher_dir):
  work = str(tmp_path_factory.mktemp("synthesize"))
  results = jobs.run(digits_config("runlocal", **{
      "job": "synthesize", "teacher.dir": tiny_teacher_dir,
      "tgt_cache.samples_per_example": SAMPLES}), work)
  assert results["num_records"] == results["num_examples"] * SAMPLES == 50 * SAMPLES
  return results["cache_dir"]


def _student(tiny_teacher_dir, cache_dir, **overrides):
  return digits_config("runlocal", **{"teacher.dir": tiny_teacher_dir, "tgt_cache.dir": cache_dir,
                                      "student.model": "mlp", **overrides})


def test_the_cache_holds_every_labelled_example_and_what_made_it(cache_dir):
  reader = synthetic_cache.Reader(cache_dir)
  settings = reader.manifest["settings"]
  assert (settings["method"], settings["sigma"], settings["seed"]) == ("tgt_random", 1.0, 0)
  assert {"teacher_params.labeler", "teacher_params.generator"} <= set(settings)
  got = reader.read(np.repeat(np.arange(50), SAMPLES), np.tile(np.arange(SAMPLES), 50))
  assert got["synthetic_image"].shape == (200, 8, 8, 1)
  assert np.all(np.isfinite(got["synthetic_teacher_logits"]))
  np.testing.assert_array_equal(got["example_id"], np.repeat(np.arange(50), SAMPLES))
  assert len({img.tobytes() for img in got["synthetic_image"]}) == 200     # all distinct
  reader.close()


def test_a_rerun_keeps_finished_shards(tiny_teacher_dir, cache_dir, tmp_path):
  shard = os.path.join(cache_dir, "shard-00000-of-00001.array_record")
  before = os.path.getmtime(shard)
  jobs.run(digits_config("runlocal", **{"job": "synthesize", "teacher.dir": tiny_teacher_dir,
                                        "tgt_cache.dir": cache_dir,
                                        "tgt_cache.samples_per_example": SAMPLES}),
           str(tmp_path))
  assert os.path.getmtime(shard) == before


def test_a_resumed_cached_run_matches_an_uninterrupted_one(tiny_teacher_dir, cache_dir,
                                                           tmp_path):
  """Uninterrupted to step 6; then step 6's checkpoint is lost (as in a crash after step 3's
  save) and the same command resumes at 3: steps 4-6 must read the same cached batches."""
  config = _student(tiny_teacher_dir, cache_dir)
  workdir = tmp_path / "run"
  whole = jobs.run(config, str(workdir))

  def last_losses():
    with open(workdir / "metrics.jsonl") as f:
      return [json.loads(line) for line in f if "train/kd_synthetic" in line][-1]
  uninterrupted = last_losses()
  shutil.rmtree(workdir / "checkpoints" / "6")
  resumed = jobs.run(config, str(workdir))
  assert resumed["checkpoint_step"] == whole["checkpoint_step"] == 6
  assert last_losses()["step"] == uninterrupted["step"] == 6
  assert last_losses()["train/kd_synthetic"] == uninterrupted["train/kd_synthetic"]
  with open(workdir / "metrics.jsonl") as f:
    steps = [json.loads(line)["step"] for line in f if "train/kd_synthetic" in line]
  assert steps == [3, 6, 6]                 # the second run started at step 3
  assert resumed["test"]["per_class_accuracy"] == whole["test"]["per_class_accuracy"]
  assert not any(f.startswith("real_decoded_explored_") for f in os.listdir(workdir))


@pytest.mark.parametrize("overrides,named", [
    ({"tgt.sigma": 0.5}, "sigma: cache 1.0, this run 0.5"),
    ({"seed": 1}, "seed: cache 0, this run 1"),
    ({"method": "tgt_prior"}, "method: cache 'tgt_random', this run 'tgt_prior'"),
    ({"data.labels_per_class": 4}, "num_examples: cache 50, this run 40"),
    ({"tgt_cache.samples": SAMPLES + 1}, "tgt_cache.samples=5: .* holds 4 samples"),
    # m distinct samples per example a step: more than the cache holds would repeat some.
    ({"tgt.num_samples": SAMPLES + 1}, "tgt.num_samples=5 .* gives 4 .*samples_per_example >= 5"),
])
def test_a_cache_made_with_other_settings_is_refused_by_name(tiny_teacher_dir, cache_dir,
                                                             tmp_path, overrides, named):
  with pytest.raises(ValueError, match=named):
    jobs.run(_student(tiny_teacher_dir, cache_dir, **overrides), str(tmp_path))
  assert not (tmp_path / "checkpoints").exists()


def test_methods_that_read_the_student_cannot_be_cached(tiny_teacher_dir, cache_dir):
  with pytest.raises(ValueError, match="method must be one of.*not 'tgt_gradient'"):
    jobs.validate(_student(tiny_teacher_dir, cache_dir, method="tgt_gradient"))
  with pytest.raises(ValueError, match="job=synthesize .* not 'kd'"):
    jobs.validate(digits_config("runlocal", job="synthesize", method="kd"))


def _tree_bytes(directory):
  out = {}
  for dirpath, _, files in os.walk(directory):
    for name in files:
      with open(os.path.join(dirpath, name), "rb") as f:
        out[os.path.relpath(os.path.join(dirpath, name), directory)] = f.read()
  return out


@pytest.mark.parametrize("overrides,named", [
    ({"tgt.sigma": 0.5}, "sigma: synthetic cache 1.0, this run 0.5"),
    ({"seed": 1}, "seed: synthetic cache 0, this run 1"),
    ({"tgt_cache.samples_per_example": 2}, "samples_per_example: synthetic cache 4, this run 2"),
])
def test_synthesize_into_a_cache_made_otherwise_is_refused_and_writes_nothing(
    tiny_teacher_dir, cache_dir, tmp_path, overrides, named):
  """It used to keep the finished shard and relabel it with the new settings' manifest."""
  before = _tree_bytes(cache_dir)
  with pytest.raises(ValueError, match=named + ".*another tgt_cache.dir"):
    jobs.run(digits_config("runlocal", **{"job": "synthesize", "teacher.dir": tiny_teacher_dir,
                                          "tgt_cache.dir": cache_dir,
                                          "tgt_cache.samples_per_example": SAMPLES,
                                          **overrides}), str(tmp_path))
  assert _tree_bytes(cache_dir) == before


def test_a_cache_of_a_teacher_retrained_in_place_is_refused(tiny_teacher_dir, cache_dir, tmp_path):
  """The cache records its teacher's parameter hashes: another teacher in the same directory
  (here: the labeler's parameters changed) is named, for the synthesize job and the student."""
  teacher = tmp_path / "teacher"
  shutil.copytree(tiny_teacher_dir, teacher)
  cache = tmp_path / "cache"
  shutil.copytree(cache_dir, cache)
  from tgt_jax import sharding  # pylint: disable=g-import-not-at-top
  from tgt_jax.teachers import generative  # pylint: disable=g-import-not-at-top
  meta, params = generative.load(str(teacher), (8, 8, 1), 10)
  params = jax.tree.map(lambda a: np.asarray(a) + 1e-3, params)
  shutil.rmtree(teacher)
  generative.save(str(teacher), meta, sharding.replicate(sharding.make_mesh(), params))
  for job in ("synthesize", "student"):
    with pytest.raises(ValueError, match=r"teacher_params\.labeler: (synthetic )?cache"):
      jobs.run(_student(str(teacher), str(cache), job=job,
                        **{"tgt_cache.samples_per_example": SAMPLES}), str(tmp_path / job))


def test_a_damaged_shard_is_named_before_the_first_step(tiny_teacher_dir, cache_dir, tmp_path):
  cache = tmp_path / "cache"
  shutil.copytree(cache_dir, cache)
  shard = cache / "shard-00000-of-00001.array_record"
  raw = bytearray(shard.read_bytes())
  raw[len(raw) // 2] ^= 0xFF
  shard.write_bytes(bytes(raw))
  with pytest.raises(ValueError, match=rf"^'{shard}' changed since it was written"):
    jobs.run(_student(tiny_teacher_dir, str(cache)), str(tmp_path / "run"))
  assert not (tmp_path / "run" / "checkpoints").exists()
