"""Every test sees 8 fake CPU devices: the sharded path is the path under test."""

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position

jax.config.update("jax_platforms", "cpu")


def digits_config(arg="runlocal", **overrides):
  """configs/digits.py with dotted-key overrides, as the command line would apply them."""
  from tgt_jax import configlib  # pylint: disable=g-import-not-at-top
  path = os.path.join(os.path.dirname(__file__), "..", "configs", "digits.py")
  return configlib.load(path, arg, **overrides)


@pytest.fixture(scope="session")
def digits():
  from tgt_jax.data import datasets  # pylint: disable=g-import-not-at-top
  return datasets.load("digits")


@pytest.fixture(scope="session")
def tiny_teacher_dir(tmp_path_factory, digits):
  """A teacher trained for a few steps (quality irrelevant), saved once per session."""
  from tgt_jax import sharding, teacher  # pylint: disable=g-import-not-at-top
  from tgt_jax.teachers import training
  directory = tmp_path_factory.mktemp("teacher")
  config = digits_config()
  meta, params, report = training.train(config.teacher, digits, sharding.make_mesh())
  meta["report"] = report
  teacher.save(directory, meta, params)
  return str(directory)
