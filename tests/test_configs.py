"""Every TFDS config's CPU variant runs the real train_and_evaluate under tfds mock data."""

import json
import os

import pytest
import tensorflow_datasets as tfds

from tgt_jax import configlib, train

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "configs")


def load_config(name, arg):
  return configlib.load(os.path.join(CONFIGS, f"{name}.py"), arg)


def test_cifar10_runlocal_teacher_then_student(tmp_path):
  with tfds.testing.mock_data(num_examples=64, policy=tfds.testing.MockPolicy.USE_CODE):
    results = train.train_and_evaluate(load_config("cifar10", "runlocal"), str(tmp_path))
  assert results["method"] == "tgt_random" and results["checkpoint_step"] == 4
  assert 0.0 <= results["test_accuracy"] <= 1.0
  assert os.path.exists(tmp_path / "teacher" / "teacher.json")
  with open(tmp_path / "results.json") as f:
    assert json.load(f)["num_devices"] == 8
  assert (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize("name", ["imagenet", "imagenet_lt"])
def test_imagenet_runlocal_with_a_teacher_from_three_parts(tmp_path, name):
  config = load_config(name, "runlocal")
  assert config.student.dtype == "bfloat16" and config.teacher.kind == "components"
  with tfds.testing.mock_data(num_examples=48, policy=tfds.testing.MockPolicy.USE_CODE):
    results = train.train_and_evaluate(config, str(tmp_path))
  assert results["data"]["name"] == config.data.name and results["checkpoint_step"] == 3
  assert set(config.data.eval_splits) <= set(results)
  assert (tmp_path / "random_teacher_parts" / "generator" / "component.json").exists()


def test_epochs_become_steps_from_the_students_set():
  config = load_config("imagenet", "")
  resolved = train.resolve_durations(config, num_examples=128_100)
  assert resolved.num_train_steps == 90 * (128_100 // 1024)
  assert resolved.optimizer.warmup_steps == 5 * (128_100 // 1024)
  assert config.num_train_steps == 0          # the input config is left alone


def test_full_size_configs_validate():
  for name, arg in (("imagenet", ""), ("imagenet_lt", ""), ("cifar10", ""), ("cifar10", "job=teacher")):
    train.validate_config(load_config(name, arg))
