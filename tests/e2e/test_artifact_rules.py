"""What lives outside a student's workdir (a teacher directory, a published file) is an
artifact: written by one job at a time, never retrained or rewritten under other settings,
read (never written) by readers, and checked on load. Each test is a case a hostile user
found: it failed before the artifact rule and passes after."""

import json
import os
import re
import shutil
import types

import pytest

from conftest import digits_config, tree_digests
from tgt_jax import configlib, jobs, workdir as workdir_lib
from tgt_jax.engine import artifacts
from tgt_jax.teachers import loading

SMALL = {"student.model": "mlp", "num_train_steps": 3}
REPO = os.path.join(os.path.dirname(__file__), "..", "..")
FIXTURES = os.path.join(REPO, "tests", "fixtures", "pretrained")


@pytest.fixture(scope="module")
def kd_teacher(tmp_path_factory):
  """A labeler-only teacher (40 labeler steps) made by a kd student, and that student's
  workdir."""
  root = tmp_path_factory.mktemp("kd")
  teacher = str(root / "teacher")
  jobs.run(digits_config("runlocal", method="kd", **SMALL, **{"teacher.dir": teacher}),
           str(root / "kd"))
  return teacher, str(root / "kd")


def test_a_labeler_is_never_trained_further_under_other_settings(kd_teacher, tmp_path):
  """The LOSS case: a TGT student with labeler_steps=200 on a kd student's teacher used to
  continue its labeler from 40 to 200 steps and overwrite it."""
  teacher, kd_workdir = kd_teacher
  before = tree_digests(teacher)
  config = digits_config("runlocal", method="tgt_random", **SMALL,
                         **{"teacher.dir": teacher, "teacher.labeler_steps": 200})
  with pytest.raises(artifacts.ArtifactMismatch,
                     match=r"teacher.labeler_steps: teacher's labeler 40, this run 200.*never "
                           r"trained again"):
    jobs.run(config, str(tmp_path / "tgt"))
  assert tree_digests(teacher) == before          # the labeler the kd run used is intact
  resumed = jobs.run(digits_config("runlocal", method="kd", **{**SMALL, "num_train_steps": 4},
                                   **{"teacher.dir": teacher}), kd_workdir)
  assert resumed["checkpoint_step"] == 4         # and the kd run still resumes from it


def test_a_teacher_job_with_another_seed_is_refused(kd_teacher, tmp_path):
  """It used to restore the seed-0 parts, log and record seed 1."""
  teacher, _ = kd_teacher
  before = tree_digests(teacher)
  config = digits_config("runlocal", **{"job": "teacher", "teacher.dir": teacher, "seed": 1})
  with pytest.raises(artifacts.ArtifactMismatch, match=r"teacher.seed: teacher's labeler 0, "
                                                       r"this run 1"):
    jobs.run(config, str(tmp_path / "job"))
  assert tree_digests(teacher) == before


def test_the_teacher_report_reads_and_never_trains(kd_teacher, tmp_path):
  teacher, _ = kd_teacher
  before = tree_digests(teacher)
  report = {"job": "teacher_report"}
  with pytest.raises(FileNotFoundError, match=r"lacks \['generator'\] and this job only reads"):
    jobs.run(digits_config("runlocal", **report, **{"teacher.dir": teacher}),
             str(tmp_path / "a"))
  assert tree_digests(teacher) == before
  typo = str(tmp_path / "no_such_teacher")
  with pytest.raises(FileNotFoundError, match="only reads teachers"):
    jobs.run(digits_config("runlocal", **report, **{"teacher.dir": typo}), str(tmp_path / "b"))
  assert not os.path.exists(typo)


def test_a_refused_first_start_leaves_the_workdir_usable(tiny_teacher_dir, tmp_path):
  """A value only the data can check (more labels per class than exist) used to leave its
  config in run_identity.json, so the corrected rerun was refused against it."""
  workdir = str(tmp_path / "run")
  with pytest.raises(ValueError, match="labels_per_class=500"):
    jobs.run(digits_config("runlocal", **SMALL, **{"teacher.dir": tiny_teacher_dir,
                                                   "data.labels_per_class": 500}), workdir)
  assert not os.path.exists(os.path.join(workdir, workdir_lib.IDENTITY_FILE))
  results = jobs.run(digits_config("runlocal", **SMALL, **{"teacher.dir": tiny_teacher_dir}),
                     workdir)
  assert results["checkpoint_step"] == 3


def test_fewer_steps_than_the_newest_checkpoint_is_refused(tiny_teacher_dir, tmp_path):
  """It used to write results.json for step 3 under num_train_steps=2 ("step 3/2")."""
  workdir = str(tmp_path / "run")
  jobs.run(digits_config("runlocal", **SMALL, **{"teacher.dir": tiny_teacher_dir}), workdir)
  before = tree_digests(workdir)
  with pytest.raises(ValueError, match=r"num_train_steps=2 is below step 3 of the newest "
                                       r"student checkpoint.*eval_only"):
    jobs.run(digits_config("runlocal", **{**SMALL, "num_train_steps": 2},
                           **{"teacher.dir": tiny_teacher_dir}), workdir)
  assert tree_digests(workdir) == before


def test_a_teacher_dir_that_cannot_be_written_is_named(tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("x")
  where = str(blocker / "teacher")
  with pytest.raises(workdir_lib.WorkdirError,
                     match=rf"^teacher.dir {re.escape(repr(where))} cannot be created: .*point "
                           r"teacher.dir at a writable directory"):
    jobs.run(digits_config("runlocal", **SMALL, **{"teacher.dir": where}), str(tmp_path / "r"))


def _source():
  return types.SimpleNamespace(image_shape=(32, 32, 3), pixel_range=(-1.0, 1.0),
                               num_classes=1000, vocabulary=None)


def test_a_published_file_that_changes_under_a_resumed_run_is_named(tmp_path):
  """A flipped byte in a published safetensors file loaded silently; its sha256 now joins the
  student's recorded teacher identity at first use and is compared on resume."""
  vae = tmp_path / "vae"
  shutil.copytree(os.path.join(FIXTURES, "autoencoder_kl"), vae)
  config = configlib.load(os.path.join(REPO, "configs", "imagenet.py"), "runlocal")
  config.teacher.vae_dir = str(vae)
  first = loading.load_pretrained(config, None, _source(), None, ("generator", "labeler"), False)
  weights = vae / "diffusion_pytorch_model.safetensors"
  assert first.identity[f"sha256 of {weights}"] == artifacts.sha256_of(weights)
  workdir_lib.record_or_check(tmp_path, first.identity, "student run's teacher",
                              file=workdir_lib.TEACHER_IDENTITY_FILE)
  raw = bytearray(weights.read_bytes())
  raw[-5] ^= 0x01                               # the last float's mantissa: still loads
  weights.write_bytes(bytes(raw))
  second = loading.load_pretrained(config, None, _source(), None, ("generator", "labeler"),
                                   False)
  with pytest.raises(workdir_lib.IdentityMismatch, match=re.escape(f"sha256 of {weights}")):
    workdir_lib.record_or_check(tmp_path, second.identity, "student run's teacher",
                                file=workdir_lib.TEACHER_IDENTITY_FILE)


def test_a_teacher_made_before_identities_still_loads(tiny_teacher_dir, tmp_path, caplog):
  """Teachers written before parts recorded their settings are read, with a warning."""
  teacher = tmp_path / "old"
  shutil.copytree(tiny_teacher_dir, teacher)
  meta = json.loads((teacher / "teacher.json").read_text())
  del meta["part_identity"], meta["checksums"]
  (teacher / "teacher.json").write_text(json.dumps(meta))
  results = jobs.run(digits_config("runlocal", **SMALL, **{"teacher.dir": str(teacher)}),
                     str(tmp_path / "run"))
  assert results["checkpoint_step"] == 3
  assert "records no settings for its parts" in caplog.text


def _retrieval_config(arg, **overrides):
  fixture = os.path.join(REPO, "tests", "fixtures", "wordnet")
  return configlib.load(os.path.join(REPO, "configs", "wordnet_retrieval.py"), arg,
                        **{"data.dir": fixture, **overrides})


@pytest.mark.slow       # two retrieval teachers and a student (~25 s on 2 idle cores)
def test_a_retrieval_student_resumed_on_a_retrained_teacher_is_refused(tmp_path):
  """It used to resume silently and mix two teachers' scores in one run."""
  teacher = str(tmp_path / "retrieval_teacher")
  student = _retrieval_config("runlocal,method=kd", **{"retrieval_teacher.dir": teacher,
                                                      "num_train_steps": 3})
  workdir = str(tmp_path / "student")
  jobs.run(student, workdir)
  before = tree_digests(os.path.join(workdir, "checkpoints"))
  shutil.rmtree(teacher)                  # retrained in place, with another seed
  jobs.run(_retrieval_config("runlocal,job=retrieval_teacher",
                             **{"retrieval_teacher.dir": teacher, "retrieval_teacher.seed": 1}),
           str(tmp_path / "elsewhere"))
  student.num_train_steps = 6
  with pytest.raises(artifacts.ArtifactMismatch, match=r"retrieval_teacher.seed: retrieval "
                                                       r"teacher 1, this run 0"):
    jobs.run(student, workdir)
  # The same settings recorded (a teacher made elsewhere and copied in): the parameters the
  # run distilled from still tell the two apart.
  meta_path = os.path.join(teacher, "retrieval_teacher.json")
  with open(meta_path) as f:
    meta = json.load(f)
  meta["identity"]["retrieval_teacher.seed"] = 0
  with open(meta_path, "w") as f:
    json.dump(meta, f)
  with pytest.raises(workdir_lib.IdentityMismatch, match="retrieval_teacher_params: recorded"):
    jobs.run(student, workdir)
  assert tree_digests(os.path.join(workdir, "checkpoints")) == before


RACER = """
import logging, sys
from tgt_jax import configlib, jobs
logging.getLogger().setLevel(logging.INFO)
config = configlib.load(sys.argv[1], "runlocal", **{"teacher.dir": sys.argv[2],
                                                    "student.model": "mlp",
                                                    "num_train_steps": 3})
jobs.run(config, sys.argv[3])
"""


@pytest.mark.slow       # two whole student jobs in parallel processes (~1 min on 2 cores)
def test_two_students_racing_for_a_missing_teacher_train_it_once(tmp_path):
  """Both need the same missing teacher: one trains it under the directory's lock, the other
  waits and then reads it; both distil from identical parameters."""
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  teacher = str(tmp_path / "teacher")
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  racers = [subprocess.Popen([sys.executable, "-c", RACER,
                              os.path.join(REPO, "configs", "digits.py"), teacher,
                              str(tmp_path / f"student{i}")], cwd=REPO, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for i in range(2)]
  logs = [r.communicate(timeout=600)[0] for r in racers]
  assert [r.returncode for r in racers] == [0, 0], logs
  assert sum("lacks ['generator', 'labeler']: training them" in log for log in logs) == 1, logs
  identities = [json.loads((tmp_path / f"student{i}" / workdir_lib.TEACHER_IDENTITY_FILE)
                           .read_text())["identity"] for i in range(2)]
  assert identities[0] == identities[1]
