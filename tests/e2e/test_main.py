"""The command line users type: python -m tgt_jax.main --config=... --workdir=..."""

import json
import os
import subprocess
import sys

from conftest import FAST_COMPILE

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
# The run's compiles are most of its time, and nothing here compares its numbers: FAST_COMPILE.
XLA_FLAGS = " ".join(["--xla_force_host_platform_device_count=2",
                      *(f"--{k}={str(v).lower()}" for k, v in FAST_COMPILE.items())])


def _run(*args, cwd=ROOT):
  env = {**os.environ, "XLA_FLAGS": XLA_FLAGS}
  return subprocess.run([sys.executable, "-m", "tgt_jax.main", *args], cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=600)


def test_cli_runs_with_overrides(tmp_path, tiny_teacher_dir):
  out = _run("--config=configs/digits.py:runlocal", f"--workdir={tmp_path}",
             "--config.method=kd", f"--config.teacher.dir={tiny_teacher_dir}",
             "--config.num_train_steps=4")
  assert out.returncode == 0, out.stderr[-3000:]
  results = json.loads((tmp_path / "results.json").read_text())
  assert results["method"] == "kd" and results["num_train_steps"] == 4
  assert results["num_devices"] == 2
  assert "steps/s" in out.stderr and "ETA" in out.stderr


def test_cli_rejects_unknown_config_key(tmp_path):
  out = _run("--config=configs/digits.py:runlocal", f"--workdir={tmp_path}",
             "--config.tgt.sigmaa=1.0")
  assert out.returncode != 0
  assert "sigmaa" in out.stderr


def test_cli_rejects_unknown_config_argument(tmp_path):
  out = _run("--config=configs/digits.py:runlocl", f"--workdir={tmp_path}")
  assert out.returncode != 0
  assert "Unknown config argument 'runlocl'" in out.stderr
