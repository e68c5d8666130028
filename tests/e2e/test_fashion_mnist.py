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
from tgt_jax.data import tfds_fashion_mnist

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


@needs_package
@pytest.mark.slow       # ~2 min on 2 cores: preparation, the teacher's compiles, three jobs
def test_runlocal_teacher_then_student_then_report_on_the_real_data(tmp_path, fashion_data_dir):
  work = str(tmp_path / "work")
  teacher = jobs.run(fashion_config("runlocal,job=teacher", fashion_data_dir), work)
  assert 0.0 <= teacher["labeler_test_accuracy"] <= 1.0
  assert 0.0 <= teacher["labeler_accuracy_on_reconstructions"] <= 1.0
  meta = json.loads((tmp_path / "work" / "teacher" / "teacher.json").read_text())
  assert meta["image_shape"] == [28, 28, 1] and meta["num_classes"] == 10
  assert meta["pixel_range"] == [0.0, 1.0]

  results = jobs.run(fashion_config("runlocal", fashion_data_dir), work)
  assert results["checkpoint_step"] == 6 and results["method"] == "tgt_random"
  assert results["data"]["name"] == "fashion_mnist_debian"
  assert results["data"]["class_counts"] == [10] * 10
  for split in ("test", "validation"):
    assert 0.0 <= results[split]["balanced_accuracy"] <= 1.0
  assert os.path.exists(os.path.join(work, "real_decoded_explored_0000006.png"))

  report = jobs.run(fashion_config("runlocal,job=teacher_report", fashion_data_dir,
                                   **{"teacher.dir": os.path.join(work, "teacher")}),
                    str(tmp_path / "report"))
  assert report["split"] == "test" and report["num_examples"] == 256
  assert 0.0 <= report["labeler_accuracy_on_reconstructions"] <= 1.0


@needs_package
@pytest.mark.slow       # 92 s on 2 idle cores: the smoke teacher, the cache, the cached student
def test_runlocal_synthesize_then_a_cached_student_on_the_real_data(tmp_path, fashion_data_dir):
  """The synthesis cache on TFDS data read by index: job=synthesize (training the smoke
  teacher first) writes x' for each labelled row, found again by its index by the student."""
  work = str(tmp_path / "work")
  made = jobs.run(fashion_config("runlocal,job=synthesize", fashion_data_dir,
                                 **{"tgt_cache.samples_per_example": 2}), work)
  assert made["num_examples"] == 100 and made["num_records"] == 200
  results = jobs.run(fashion_config("runlocal", fashion_data_dir, **{
      "teacher.dir": os.path.join(work, "teacher"), "tgt_cache.dir": made["cache_dir"]}),
                     str(tmp_path / "student"))
  assert results["checkpoint_step"] == 6 and results["data"]["class_counts"] == [10] * 10
  identity = json.loads((tmp_path / "student" / "teacher_identity.json").read_text())["identity"]
  assert "synthetic_cache" in identity and list(identity) != ["synthetic_cache"]
