"""A teacher job killed with SIGKILL resumes each part from its last checkpoint, not from 0."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
STEPS, CHECKPOINT_EVERY, LOG_EVERY = 400, 40, 10


def _command(workdir):
  flags = {"teacher.generator_steps": STEPS, "teacher.labeler_steps": 20,
           "teacher.checkpoint_every": CHECKPOINT_EVERY, "teacher.log_every": LOG_EVERY}
  return [sys.executable, "-m", "tgt_jax.main", "--config=configs/digits_teacher.py:runlocal",
          f"--workdir={workdir}", *(f"--config.{k}={v}" for k, v in flags.items())]


def _env():
  return {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}


def _generator_steps(metrics_file):
  with open(metrics_file) as f:
    return [json.loads(line)["step"] for line in f]


@pytest.mark.slow      # 26 s; the student's SIGKILL test (test_recovery.py) runs by default
def test_sigkilled_teacher_job_resumes_its_generator_from_the_checkpoint(tmp_path):
  run_dir = tmp_path / "teacher" / "training" / "generator"
  ckpt_dir = run_dir / "checkpoints"
  proc = subprocess.Popen(_command(tmp_path), cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 300
  while not (ckpt_dir.is_dir() and any(p.name.isdigit() for p in ckpt_dir.iterdir())):
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    assert time.time() < deadline, "no generator checkpoint appeared"
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not (tmp_path / "results.json").exists()
  saved = max(int(p.name) for p in ckpt_dir.iterdir() if p.name.isdigit())
  assert saved < STEPS
  logged_before = len(_generator_steps(run_dir / "metrics.jsonl"))

  out = subprocess.run(_command(tmp_path), cwd=ROOT, env=_env(), capture_output=True, text=True,
                       timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  resumed = _generator_steps(run_dir / "metrics.jsonl")[logged_before:]
  assert resumed[0] == saved + LOG_EVERY          # the second run started at the checkpoint
  assert resumed[-1] == STEPS
  results = json.loads((tmp_path / "results.json").read_text())
  assert results["job"] == "teacher" and 0 <= results["labeler_test_accuracy"] <= 1
