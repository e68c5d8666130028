"""Every test sees 8 fake CPU devices: the sharded path is the path under test."""

import atexit
import os
import shutil
import tempfile

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# One XLA compilation cache for the run, shared with the subprocesses tests start: many tests
# compile the same steps, and a hit skips the compile (most of the suite's time on 2 cores).
# The programs are the same either way; TGT_JAX_TEST_XLA_CACHE=0 turns it off.
if (os.environ.get("TGT_JAX_TEST_XLA_CACHE", "1") != "0"
    and "JAX_COMPILATION_CACHE_DIR" not in os.environ):
  _cache = tempfile.mkdtemp(prefix="tgt_jax_test_xla_cache_")
  atexit.register(shutil.rmtree, _cache, ignore_errors=True)
  os.environ.update(JAX_COMPILATION_CACHE_DIR=_cache,
                    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                    JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position

jax.config.update("jax_platforms", "cpu")

# XLA:CPU options for tests whose time is mostly compiling (results move by less than 1e-6):
# no LLVM optimisation, and no fusion emitters where XLA still has the older path (jaxlib 0.12
# removed xla_cpu_use_fusion_emitters; a compile that names it fails there).
FAST_COMPILE = {"xla_backend_optimization_level": 0}
if jax.__version_info__ < (0, 12):
  FAST_COMPILE["xla_cpu_use_fusion_emitters"] = False


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
  from tgt_jax import sharding  # pylint: disable=g-import-not-at-top
  from tgt_jax.teachers import generative, training
  directory = tmp_path_factory.mktemp("teacher")
  config = digits_config()
  meta, params, report = training.train(config.teacher, digits, sharding.make_mesh())
  meta["report"] = report
  generative.save(directory, meta, params)
  return str(directory)


def assert_names_missing_and_unused(load, tensors, missing, unused):
  """`load(damaged)` of `tensors` less the `missing` keys plus the `unused` ones must fail,
  counting both kinds and naming every key: what a user needs to fix a weight file."""
  from tgt_jax.models import weight_files  # pylint: disable=g-import-not-at-top
  damaged = {k: v for k, v in tensors.items() if k not in missing}
  assert len(damaged) == len(tensors) - len(missing), "a `missing` key is not in the file"
  damaged.update(unused)
  with pytest.raises(weight_files.WeightFileError) as e:
    load(damaged)
  message = str(e.value)
  assert (f"{len(missing)} key(s) missing" in message
          and f"{len(unused)} key(s) not used" in message), message
  for key in (*missing, *unused):
    assert key in message, (key, message)


def assert_bf16_compute_close(apply, variables, x, want):
  """A loaded labeler run in bfloat16: float32 params and logits, finite, within 10% of the
  float32 reference's scale (bf16 has 8 mantissa bits; a broken cast is far off)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  assert {a.dtype for a in jax.tree.leaves(variables)} == {np.dtype(np.float32)}
  logits = np.asarray(apply(variables, x))
  assert logits.dtype == np.float32 and np.all(np.isfinite(logits))
  assert np.abs(logits - want).max() < 0.1 * np.abs(want).max()


def tree_digests(directory):
  """{relative path: sha256} of every file below `directory`: "untouched" means equal."""
  import hashlib  # pylint: disable=g-import-not-at-top
  out = {}
  for dirpath, _, files in os.walk(directory):
    for name in files:
      path = os.path.join(dirpath, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, directory)] = hashlib.sha256(f.read()).hexdigest()
  return out
