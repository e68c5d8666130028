"""Every TFDS config's CPU variant runs the real train_and_evaluate under tfds mock data."""

import importlib.util
import json
import os

import pytest
import tensorflow_datasets as tfds

from tgt_jax import train

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "configs")


def load_config(name, arg):
  spec = importlib.util.spec_from_file_location(name, os.path.join(CONFIGS, f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def test_cifar10_runlocal_teacher_then_student(tmp_path):
  with tfds.testing.mock_data(num_examples=64, policy=tfds.testing.MockPolicy.USE_CODE):
    results = train.train_and_evaluate(load_config("cifar10", "runlocal"), str(tmp_path))
  assert results["method"] == "tgt_random" and results["checkpoint_step"] == 4
  assert 0.0 <= results["test_accuracy"] <= 1.0
  assert os.path.exists(tmp_path / "teacher" / "teacher.json")
  with open(tmp_path / "results.json") as f:
    assert json.load(f)["num_devices"] == 8
  assert (tmp_path / "checkpoints").exists()
