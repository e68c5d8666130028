"""A workdir belongs to one run, checked by whole jobs: what a user does next with a workdir
(another config, eval_only, a damaged teacher, a bad path) stops with a named error and
leaves every checkpoint as it was. Signals and concurrent starts: e2e/test_recovery.py."""

import json
import os
import re
import shutil

import pytest

from tgt_jax import jobs, workdir as workdir_lib
from tgt_jax.teachers import generative

from conftest import digits_config, tree_digests

SMALL = {"student.model": "mlp", "num_train_steps": 3}


def _config(teacher_dir, **overrides):
  return digits_config("runlocal", **{**SMALL, "teacher.dir": teacher_dir, **overrides})


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_teacher_dir):
  """A finished 3-step student run: (workdir, its checkpoint files' hashes, results.json)."""
  workdir = str(tmp_path_factory.mktemp("finished"))
  jobs.run(_config(tiny_teacher_dir), workdir)
  with open(os.path.join(workdir, "results.json")) as f:
    return workdir, tree_digests(workdir), f.read()


@pytest.mark.parametrize("overrides,differs", [
    ({"student.model": "cnn_small"}, "student.model: recorded 'mlp', now 'cnn_small'"),
    ({"optimizer.name": "sgd"}, "optimizer.name: recorded 'adam', now 'sgd'"),
    ({"method": "ce"}, "method: recorded 'tgt_random', now 'ce'"),
    ({"seed": 1}, "seed: recorded 0, now 1"),
    ({"eval_only": True, "student.model": "cnn_small"}, "student.model"),
])
def test_another_run_in_a_finished_workdir_is_refused_and_touches_nothing(
    finished, tiny_teacher_dir, overrides, differs):
  workdir, before, results = finished
  with pytest.raises(workdir_lib.IdentityMismatch, match="holds another student run") as e:
    jobs.run(_config(tiny_teacher_dir, **overrides), workdir)
  assert differs in str(e.value) and "Use another --workdir" in str(e.value)
  assert tree_digests(workdir) == before          # checkpoints, results, metrics: same bytes
  assert not os.path.exists(os.path.join(workdir, "checkpoints.quarantine"))
  with open(os.path.join(workdir, "results.json")) as f:
    assert f.read() == results


def test_the_same_run_extended_resumes(finished, tiny_teacher_dir, tmp_path):
  """num_train_steps is one of the keys a resume may change (workdir.RESUMABLE_KEYS)."""
  workdir = str(tmp_path / "copy")
  shutil.copytree(finished[0], workdir)
  results = jobs.run(_config(tiny_teacher_dir, num_train_steps=6, log_every=1), workdir)
  assert results["checkpoint_step"] == 6
  assert "num_train_steps" in workdir_lib.RESUMABLE_KEYS


def test_unknown_optimizer_is_refused_before_a_teacher_is_trained(tmp_path):
  workdir = tmp_path / "run"
  with pytest.raises(ValueError, match="'lion9000'"):
    jobs.run(digits_config("runlocal", **{**SMALL, "optimizer.name": "lion9000"}), str(workdir))
  assert not (workdir / "teacher").exists() and not (workdir / "checkpoints").exists()


@pytest.mark.parametrize("damage,match", [
    ("json", r"teacher\.json is not valid JSON"),
    ("params", r"params"),
])
def test_a_damaged_teacher_is_named_by_the_student_job(tmp_path, tiny_teacher_dir, damage, match):
  teacher_dir = str(tmp_path / "teacher")
  shutil.copytree(tiny_teacher_dir, teacher_dir)
  if damage == "json":
    with open(os.path.join(teacher_dir, generative.META_FILE), "w") as f:
      f.write("{ not json")
  else:
    for dirpath, _, files in os.walk(os.path.join(teacher_dir, generative.PARAMS_DIR)):
      for name in files:
        with open(os.path.join(dirpath, name), "r+b") as f:
          f.truncate(os.path.getsize(os.path.join(dirpath, name)) // 3)
  with pytest.raises(generative.DamagedArtifact, match=match) as e:
    jobs.run(_config(teacher_dir), str(tmp_path / "run"))
  assert teacher_dir in str(e.value) and len(str(e.value).splitlines()) <= 3


def test_a_workdir_that_is_a_file_is_a_named_error(tmp_path, tiny_teacher_dir):
  path = tmp_path / "results_not_a_dir"
  path.write_text("x")
  with pytest.raises(workdir_lib.WorkdirError,
                     match=re.escape(f"--workdir {str(path)!r} is a regular file")):
    jobs.run(_config(tiny_teacher_dir), str(path))
  assert path.read_text() == "x"


def test_a_resume_with_another_teacher_in_the_same_directory_is_refused(tmp_path, digits):
  """teacher.dir names a directory; what the run distilled from is its parameters."""
  teacher_dir, workdir = str(tmp_path / "teacher"), str(tmp_path / "run")
  shared = {"teacher.dir": teacher_dir, "teacher.generator_steps": 5,
            "teacher.labeler_steps": 5}
  jobs.run(digits_config("runlocal", **{**SMALL, **shared}), workdir)
  assert (tmp_path / "run" / workdir_lib.TEACHER_IDENTITY_FILE).exists()
  before = tree_digests(os.path.join(workdir, "checkpoints"))
  shutil.rmtree(teacher_dir)                 # retrained in place with another seed
  jobs.run(digits_config("runlocal", **{**shared, "job": "teacher", "teacher.seed": 1}),
           str(tmp_path / "elsewhere"))
  # The teacher's recorded settings name the change before any parameter is compared.
  with pytest.raises(ValueError, match=r"teacher\.seed: teacher's generator 1, this run 0"):
    jobs.run(digits_config("runlocal", **{**SMALL, **shared, "num_train_steps": 6}), workdir)
  # With the same settings recorded (a teacher made elsewhere and copied in), the parameters
  # the run distilled from still tell them apart.
  meta_path = os.path.join(teacher_dir, "teacher.json")
  with open(meta_path) as f:
    meta = json.load(f)
  for part in meta["part_identity"].values():
    part["teacher.seed"] = 0
  with open(meta_path, "w") as f:
    json.dump(meta, f)
  with pytest.raises(workdir_lib.IdentityMismatch, match=r"teacher_params\.labeler: recorded"):
    jobs.run(digits_config("runlocal", **{**SMALL, **shared, "num_train_steps": 6}), workdir)
  assert tree_digests(os.path.join(workdir, "checkpoints")) == before
