"""configs/fashion_mnist.py:runlocal on the real Fashion-MNIST (Debian's idx files through TFDS).

The dataset is prepared once per test session (15-16 s on 2 cores) at one place
that every test of the session shares (tests/e2e/test_recovery.py's resume test too).
"""

import json
import logging
import os
import time

import pytest

from tgt_jax import configlib, jobs
from tgt_jax.data import synthetic_cache, tfds_fashion_mnist
from tgt_jax.tasks import cache

CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "fashion_mnist.py")
needs_package = pytest.mark.skipif(
    not os.path.isdir(tfds_fashion_mnist.DEBIAN_DIR),
    reason=f"{tfds_fashion_mnist.DEBIAN_DIR} is absent: apt-get install dataset-fashion-mnist")


def prepared_data_dir(tmp_path_factory):
  """The real dataset as TFDS ArrayRecord, built the first time a test of the session asks."""
  data_dir = str(tmp_path_factory.getbasetemp() / "fashion_mnist_tfds")
  start = time.time()
  if not tfds_fashion_mnist.is_prepared(data_dir):
    tfds_fashion_mnist.prepare(data_dir)
    logging.warning("Prepared the real Fashion-MNIST for the tests in %.1f s.", time.time() - start)
  return data_dir


@pytest.fixture(scope="session")
def fashion_data_dir(tmp_path_factory):
  return prepared_data_dir(tmp_path_factory)


def fashion_config(arg, data_dir, **overrides):
  return configlib.load(CONFIG, arg, **{"data.data_dir": data_dir, **overrides})


# eval_every (a key a resume may change) at the last step: the 6,000 validation images once
# in the loop instead of twice; logging and checkpoints keep runlocal's every 3 steps.
ONE_EVALUATION = {"eval_every": 6}


@needs_package
def test_runlocal_teacher_synthesize_student_and_cached_student_on_the_real_data(
    tmp_path, fashion_data_dir):
  """Every job a Fashion-MNIST run needs, on the real data read by index: the teacher, its
  synthesis cache, a student distilling online from WORKDIR/teacher and one streaming the cache
  (the cache is keyed by the labelled rows' indices, which only data read by index has); then
  the same with teacher=diffusion."""
  work = str(tmp_path / "work")
  teacher_dir = os.path.join(work, "teacher")
  teacher = jobs.run(fashion_config("runlocal,job=teacher", fashion_data_dir), work)
  assert 0.0 <= teacher["labeler_test_accuracy"] <= 1.0
  meta = json.loads((tmp_path / "work" / "teacher" / "teacher.json").read_text())
  assert meta["image_shape"] == [28, 28, 1] and meta["num_classes"] == 10
  assert meta["pixel_range"] == [0.0, 1.0]

  made = jobs.run(fashion_config("runlocal,job=synthesize", fashion_data_dir, **{
      "teacher.dir": teacher_dir, "tgt_cache.samples_per_example": 2}), str(tmp_path / "cache"))
  manifest = synthetic_cache.read_manifest(made["cache_dir"])
  assert manifest["num_examples"] == made["num_examples"] == 100     # 10 labels × 10 classes
  assert manifest["samples_per_example"] == 2 and made["num_records"] == 200
  assert sum(s["num_examples"] for s in manifest["shards"]) == 100
  assert manifest["settings"]["method"] == "tgt_random"

  online = jobs.run(fashion_config("runlocal", fashion_data_dir, **ONE_EVALUATION), work)
  assert online["checkpoint_step"] == 6 and online["method"] == "tgt_random"
  assert online["data"]["name"] == "fashion_mnist_debian"
  assert online["data"]["class_counts"] == [10] * 10
  assert online["teacher_dir"] == teacher_dir
  assert set(online) >= {"test", "validation"}
  assert os.path.exists(os.path.join(work, "real_decoded_explored_0000006.png"))

  cached = jobs.run(fashion_config("runlocal", fashion_data_dir, **ONE_EVALUATION, **{
      "teacher.dir": teacher_dir, "tgt_cache.dir": made["cache_dir"]}), str(tmp_path / "cached"))
  assert cached["checkpoint_step"] == 6 and cached["data"]["class_counts"] == [10] * 10
  identity = json.loads((tmp_path / "cached" / "teacher_identity.json").read_text())["identity"]
  assert identity["synthetic_cache"] == cache.fingerprint(manifest)
  assert not list((tmp_path / "cached").glob("real_decoded_explored_*.png"))   # no G to probe

  # teacher=diffusion: the same VAE and labeler, a DiT trained in its latent on demand by the
  # synthesis job (WORKDIR/diffusion), tgt_prior's x' drawn under uniform classes, a student.
  diffusion = {"teacher.dir": teacher_dir, "tgt_cache.samples_per_example": 2}
  made = jobs.run(fashion_config("runlocal,teacher=diffusion,method=tgt_prior,job=synthesize",
                                 fashion_data_dir, **diffusion), str(tmp_path / "dcache"))
  dit_dir = tmp_path / "dcache" / "diffusion"
  assert (dit_dir / "diffusion.json").exists() and made["num_records"] == 200
  assert list((dit_dir / "training" / "diffusion").glob("samples_per_class_*.png"))
  student = jobs.run(fashion_config("runlocal,teacher=diffusion,method=tgt_prior",
                                    fashion_data_dir, **ONE_EVALUATION, **{
                                        "teacher.dir": teacher_dir,
                                        "teacher.diffusion_dir": str(dit_dir),
                                        "tgt_cache.dir": made["cache_dir"]}),
                     str(tmp_path / "dstudent"))
  assert student["checkpoint_step"] == 6 and student["method"] == "tgt_prior"
  assert synthetic_cache.read_manifest(made["cache_dir"])["settings"]["method"] == "tgt_prior"


@needs_package
@pytest.mark.slow       # 380 s under heavy load; the default test above runs the same teacher job
def test_runlocal_teacher_report_on_the_real_data(tmp_path, fashion_data_dir):
  work = str(tmp_path / "work")
  jobs.run(fashion_config("runlocal,job=teacher", fashion_data_dir), work)
  report = jobs.run(fashion_config("runlocal,job=teacher_report", fashion_data_dir,
                                   **{"teacher.dir": os.path.join(work, "teacher")}),
                    str(tmp_path / "report"))
  assert report["split"] == "test" and report["num_examples"] == 256
  assert 0.0 <= report["labeler_accuracy_on_reconstructions"] <= 1.0
