"""The real train_and_evaluate on digits: teacher + student, checkpoints, resume, bad input."""

import json
import os

import numpy as np
import pytest

from tgt_jax import jobs
from tgt_jax.tasks import classification
from tgt_jax.data import sources

from conftest import digits_config


def _results(workdir):
  with open(os.path.join(workdir, "results.json")) as f:
    return json.load(f)


def test_end_to_end_teacher_and_student_on_eight_devices(tmp_path):
  """From nothing: trains the teacher, then the TGT student; writes everything a user reads."""
  workdir = str(tmp_path / "run")
  config = digits_config("runlocal", **{"method": "tgt_gradient"})
  results = jobs.run(config, workdir)
  assert results["num_devices"] == 8
  on_disk = _results(workdir)
  assert on_disk["method"] == "tgt_gradient" and on_disk["seed"] == 0
  assert on_disk["data"]["subset"] == "5_per_class"
  assert on_disk["data"]["class_counts"] == [5] * 10
  assert 0.0 <= on_disk["test_accuracy"] <= 1.0
  assert len(on_disk["test"]["per_class_accuracy"]) == 10
  for group in ("head", "medium", "tail"):
    assert f"{group}_accuracy" in on_disk["test"]
  assert os.path.exists(os.path.join(workdir, "teacher", "teacher.json"))
  assert "labeler_test_accuracy" in on_disk["teacher_report"]
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["3", "6"]
  assert any(f.startswith("real_decoded_explored_") and f.endswith(".png")
             for f in os.listdir(workdir))
  assert os.listdir(os.path.join(workdir, "tensorboard"))
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  logged = set().union(*rows)
  for key in ("train/ce", "train/kd_real", "train/kd_synthetic", "steps_per_sec", "eta_sec",
              "train/discrepancy_before_exploration", "train/discrepancy_after_exploration",
              "train/teacher_entropy_synthetic", "test/balanced_accuracy"):
    assert key in logged, key


def test_relative_workdir_and_teacher_dir(tmp_path, monkeypatch):
  """The README's command uses a relative workdir; orbax itself only takes absolute paths.

  kd with an mlp student: the teacher directory is still trained from nothing (its labeler
  part, saved like every part) and the student checkpointed, without the VAE and exploration
  compiles a relative path has nothing to do with."""
  monkeypatch.chdir(tmp_path)
  config = digits_config("runlocal", **{"teacher.dir": "rel_teacher", "num_train_steps": 3,
                                        "method": "kd", "student.model": "mlp"})
  jobs.run(config, "rel/run")
  assert (tmp_path / "rel" / "run" / "results.json").exists()
  assert (tmp_path / "rel_teacher" / "teacher.json").exists()
  assert (tmp_path / "rel" / "run" / "checkpoints" / "3").exists()


def test_rerun_resumes_from_the_workdir(tmp_path, tiny_teacher_dir):
  workdir = str(tmp_path / "run")
  config = digits_config("runlocal", **{"teacher.dir": tiny_teacher_dir})
  first = jobs.run(config, workdir)
  config.num_train_steps = 9          # the same command, asked for more steps
  second = jobs.run(config, workdir)
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    steps = [json.loads(line)["step"] for line in f if "train/ce" in line]
  assert steps == [3, 6, 9]           # the second run started at step 6, not 0
  assert second["num_train_steps"] == 9 and first["num_train_steps"] == 6


@pytest.mark.parametrize("method,augment", [
    ("ce", "none"), ("kd", "shift"), ("kd_mixup", "none"), ("kd_transfer", "flip_shift"),
    ("tgt_prior", "none"), ("tgt_gradient_input", "shift")])
def test_every_method_runs(tmp_path, tiny_teacher_dir, method, augment):
  config = digits_config("runlocal", **{"method": method, "teacher.dir": tiny_teacher_dir,
                                        "student.model": "mlp", "num_train_steps": 3,
                                        "data.augment": augment})
  results = jobs.run(config, str(tmp_path))
  assert results["method"] == method
  assert (results["teacher_dir"] is None) == (method == "ce")   # CE never needs a teacher


def test_long_tail_run_reports_groups(tmp_path, tiny_teacher_dir):
  config = digits_config("runlocal", **{"data.labels_per_class": 0, "data.imbalance": 50.0,
                                        "teacher.dir": tiny_teacher_dir, "num_train_steps": 3})
  results = jobs.run(config, str(tmp_path))
  assert results["data"]["subset"] == "long_tail_50"
  assert results["data"]["class_groups"]["tail"] == [7, 8, 9]
  counts = results["data"]["class_counts"]
  assert counts[0] / counts[-1] == pytest.approx(50, rel=0.25)


def test_teacher_job_writes_report(tmp_path):
  from tgt_jax import configlib  # pylint: disable=g-import-not-at-top
  import ml_collections  # pylint: disable=g-import-not-at-top
  config = ml_collections.ConfigDict(dict(job="teacher", seed=0,
                                          data=dict(name="digits"),
                                          teacher=configlib.digits_teacher(runlocal=True)))
  results = jobs.run(config, str(tmp_path))
  for key in ("labeler_test_accuracy", "reconstruction_mse", "labeler_accuracy_on_reconstructions",
              "latent_kl_nats", "label_kept_at_sigma_1.0"):
    assert np.isfinite(results[key]), key
  assert os.path.exists(tmp_path / "teacher" / "teacher.json")


@pytest.mark.parametrize("overrides,match", [
    ({"method": "magic"}, "Unknown method 'magic'"),
    ({"student.model": "resnet9000"}, "Unknown classifier model name 'resnet9000'"),
    ({"teacher.generator": "gan"}, "Unknown generator model name 'gan'"),
    ({"tgt.sigma": -1.0}, "tgt.sigma must be a finite number >= 0, got -1.0"),
    ({"tgt.eta": -1.0}, "tgt.eta must be a finite number >= 0, got -1.0"),
    ({"tgt.steps": -1}, "tgt.steps must be a finite number >= 0, got -1"),
    ({"batch_size": 60}, r"batch_size=60 is not divisible by the number of devices \(8\)"),
    ({"data.labels_per_class": 1000}, "labels_per_class=1000 is more than exist"),
    ({"data.name": "mnist_typo"}, "Unknown dataset name 'mnist_typo'"),
    ({"job": "distill"}, "Unknown job 'distill'"),
    ({"optimizer.name": "adagrad"}, "Unknown optimizer name 'adagrad'"),
    ({"data.augment": "rotate"}, "Unknown augment 'rotate'"),
    ({"batch_size": 0}, "batch_size must be a whole number >= 1.*got 0"),
    ({"batch_size": -8}, "batch_size must be a whole number >= 1.*got -8"),
    ({"seed": -1}, "seed must be a whole number in .*got -1"),
    ({"tgt.alpha": float("nan")}, "tgt.alpha must be a finite number >= 0, got nan"),
    ({"optimizer.warmup_steps": -5}, "optimizer.warmup_steps must be a finite number >= 0"),
    ({"optimizer.weight_decay": -0.1}, "optimizer.weight_decay must be a finite number >= 0"),
    ({"optimizer.learning_rate": float("inf")}, "optimizer.learning_rate must be a finite"),
    ({"teacher.batch_size": 0}, "teacher.batch_size must be a whole number >= 1, got 0"),
])
def test_bad_input_is_named(tmp_path, tiny_teacher_dir, overrides, match):
  config = digits_config("runlocal", **{"teacher.dir": tiny_teacher_dir, **overrides})
  with pytest.raises(ValueError, match=match):
    jobs.run(config, str(tmp_path))


def test_teacher_that_does_not_fit_names_expected_and_found(tmp_path, tiny_teacher_dir):
  config = digits_config("runlocal", **{"teacher.dir": tiny_teacher_dir, "teacher.latent_dim": 32})
  with pytest.raises(ValueError, match="teacher.latent_dim: teacher's generator 16, this run 32"):
    jobs.run(config, str(tmp_path))


def test_missing_teacher_without_training_is_named(tmp_path):
  missing = str(tmp_path / "nowhere")
  config = digits_config("runlocal", **{"teacher.dir": missing, "teacher.train_if_missing": False})
  with pytest.raises(FileNotFoundError, match="No teacher at .*nowhere"):
    jobs.run(config, str(tmp_path / "run"))


@pytest.mark.slow
def test_full_digits_tgt_beats_ce(tmp_path):
  """The README's claim, at full size: TGT-random beats CE on 5 labels/class (seed 0)."""
  teacher_dir = str(tmp_path / "teacher")
  accuracy = {}
  for method in ("tgt_random", "ce"):
    config = digits_config(None, **{"method": method, "teacher.dir": teacher_dir})
    accuracy[method] = jobs.run(config, str(tmp_path / method))["test_accuracy"]
  assert accuracy["tgt_random"] > accuracy["ce"] + 0.05, accuracy


def test_kd_transfer_batches_unlabelled_train_images(digits):
  config = digits_config("runlocal", **{"method": "kd_transfer", "tgt.num_samples": 2})
  cfg = classification.tgt_config(config)
  labelled, _ = sources.student_subset(config, digits.splits["train"], digits.num_classes)
  batch = classification.batch_at(config, cfg, labelled,
                             digits.splits["train"], step=0)
  assert batch["image"].shape[0] == config.batch_size
  assert batch["transfer"].shape == (2 * config.batch_size, 8, 8, 1)
  # Drawn from the whole train split, not only the 50 labelled images.
  labelled_set = {im.tobytes() for im in labelled.images}
  assert sum(im.tobytes() not in labelled_set for im in batch["transfer"]) > config.batch_size
  again = classification.batch_at(config, cfg, labelled,
                             digits.splits["train"], step=0)
  np.testing.assert_array_equal(batch["transfer"], again["transfer"])
