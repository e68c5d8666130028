"""teachers/loading.py: a student job trains only the teacher parts its method calls."""

import json
import os

import jax
import numpy as np
import pytest

from tgt_jax import jobs
from tgt_jax.teachers import generative

from conftest import digits_config

SMALL = {"student.model": "mlp", "num_train_steps": 3}


def _meta(teacher_dir):
  with open(os.path.join(teacher_dir, generative.META_FILE)) as f:
    return json.load(f)


def _labeler(teacher_dir, digits):
  _, params = generative.load(teacher_dir, digits.image_shape, digits.num_classes)
  return jax.device_get(params["labeler"])


def test_kd_trains_the_labeler_alone_and_tgt_adds_the_vae(tmp_path, digits):
  kd_workdir = str(tmp_path / "kd")
  results = jobs.run(digits_config("runlocal", method="kd", **SMALL), kd_workdir)
  teacher_dir = os.path.join(kd_workdir, "teacher")
  assert results["teacher_dir"] == teacher_dir
  assert _meta(teacher_dir)["parts"] == ["labeler"]
  assert set(_meta(teacher_dir)["report"]) == {"labeler_test_accuracy"}
  training = os.path.join(teacher_dir, "training")
  assert sorted(os.listdir(training)) == ["labeler"]          # no VAE was trained
  labeler = _labeler(teacher_dir, digits)

  refused = digits_config("runlocal", method="tgt_random", **SMALL,
                          **{"teacher.dir": teacher_dir, "teacher.train_if_missing": False})
  with pytest.raises(ValueError, match=r"holds \['labeler'\], and method 'tgt_random' also "
                                       r"needs its \['generator'\]"):
    jobs.run(refused, str(tmp_path / "refused"))

  config = digits_config("runlocal", method="tgt_random", **SMALL, **{"teacher.dir": teacher_dir})
  jobs.run(config, str(tmp_path / "tgt"))
  meta = _meta(teacher_dir)
  assert meta["parts"] == ["generator", "labeler"]
  assert "reconstruction_mse" in meta["report"]
  assert sorted(os.listdir(training)) == ["generator", "labeler"]
  for a, b in zip(jax.tree.leaves(labeler), jax.tree.leaves(_labeler(teacher_dir, digits))):
    np.testing.assert_array_equal(a, b)       # restored at its last step, not trained again
