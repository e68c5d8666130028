"""Interruptions lose nothing: SIGKILL, SIGTERM, corrupt checkpoints, NaNs, eval-only."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from tgt_jax import checkpointing, sharding
from tgt_jax.data import datasets
from tgt_jax import jobs
from tgt_jax.tasks import classification

from conftest import digits_config

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
STEPS = 200
# A run long enough to be interrupted part-way: checkpoints every 50 steps, so a kill seen
# after the first one lands 150 steps (~3 s of CPU) before the end. 600 steps cost
# ~10 s more CPU in each of the reference run and the restart and tested nothing more.
OVERRIDES = {"num_train_steps": STEPS, "checkpoint_every": 50, "log_every": 50,
             "eval_every": 10**6, "student.model": "mlp", "method": "tgt_random"}


def _config(teacher_dir, **extra):
  return digits_config("runlocal", **{**OVERRIDES, "teacher.dir": teacher_dir, **extra})


def _cli_args(teacher_dir, workdir):
  flags = [f"--config.{k}={v}" for k, v in {**OVERRIDES, "teacher.dir": teacher_dir}.items()]
  return [sys.executable, "-m", "tgt_jax.main", "--config=configs/digits.py:runlocal",
          f"--workdir={workdir}", *flags]


def _start(teacher_dir, workdir):
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
  return subprocess.Popen(_cli_args(teacher_dir, workdir), cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_checkpoint(workdir, proc, timeout=300):
  """Blocks until the run has saved at least one checkpoint (and is still running)."""
  ckpt_dir = os.path.join(workdir, "checkpoints")
  deadline = time.time() + timeout
  while time.time() < deadline:
    if os.path.isdir(ckpt_dir) and any(d.isdigit() for d in os.listdir(ckpt_dir)):
      return
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    time.sleep(0.05)
  raise TimeoutError("no checkpoint appeared")


def _final_params(workdir, config):
  mesh = sharding.make_mesh()
  _, _, target, _ = classification.init_student(config, datasets.load("digits"), mesh)
  ckpt = checkpointing.Checkpointer(os.path.join(workdir, "checkpoints"))
  state, _ = ckpt.restore(target, STEPS)
  ckpt.close()
  return jax.device_get(state.params)


def _assert_close(a, b, path="results"):
  """Equal structure, numbers within 1e-6."""
  assert type(a) is type(b) or {type(a), type(b)} <= {int, float}, path
  if isinstance(a, dict):
    assert set(a) == set(b), path
    for key in a:
      _assert_close(a[key], b[key], f"{path}.{key}")
  elif isinstance(a, list):
    assert len(a) == len(b), path
    for i, (x, y) in enumerate(zip(a, b)):
      _assert_close(x, y, f"{path}[{i}]")
  elif isinstance(a, float):
    assert abs(a - b) <= 1e-6 or a == b, (path, a, b)
  else:
    assert a == b, (path, a, b)


def _comparable(results):
  return {k: v for k, v in results.items() if k != "wall_time_sec"}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_teacher_dir):
  """An uninterrupted run of the same command."""
  workdir = str(tmp_path_factory.mktemp("reference"))
  config = _config(tiny_teacher_dir)
  results = jobs.run(config, workdir)
  return workdir, results, _final_params(workdir, config)


def _assert_same_as_reference(workdir, reference, teacher_dir):
  _, ref_results, ref_params = reference
  results = json.loads(open(os.path.join(workdir, "results.json")).read())
  _assert_close(_comparable(results), _comparable(ref_results))
  params = _final_params(workdir, _config(teacher_dir))
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(ref_params)):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def _restart_to_completion(teacher_dir, workdir):
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
  out = subprocess.run(_cli_args(teacher_dir, workdir), cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  return out


def test_sigkill_then_restart_matches_uninterrupted(tmp_path, tiny_teacher_dir, reference):
  workdir = str(tmp_path)
  proc = _start(tiny_teacher_dir, workdir)
  _wait_for_checkpoint(workdir, proc)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not os.path.exists(os.path.join(workdir, "results.json"))   # really killed mid-way
  out = _restart_to_completion(tiny_teacher_dir, workdir)
  assert "Restored student checkpoint at step" in out.stderr
  _assert_same_as_reference(workdir, reference, tiny_teacher_dir)


@pytest.mark.parametrize("sig,code", [       # a preemption notice and Ctrl-C: 17-27 s each
    pytest.param(signal.SIGTERM, 143, marks=pytest.mark.slow),
    pytest.param(signal.SIGINT, 130, marks=pytest.mark.slow),
])
def test_signal_saves_exits_and_resumes(tmp_path, tiny_teacher_dir, reference, sig, code):
  workdir = str(tmp_path)
  proc = _start(tiny_teacher_dir, workdir)
  _wait_for_checkpoint(workdir, proc)
  proc.send_signal(sig)
  _, stderr = proc.communicate(timeout=300)
  assert proc.returncode == code, stderr[-3000:]
  assert "Preempted: saved step" in stderr
  saved = int(stderr.split("Preempted: saved step ")[1].split()[0])
  assert 0 < saved < STEPS
  assert str(saved) in os.listdir(os.path.join(workdir, "checkpoints"))
  out = _restart_to_completion(tiny_teacher_dir, workdir)
  assert f"Restored student checkpoint at step {saved}" in out.stderr
  _assert_same_as_reference(workdir, reference, tiny_teacher_dir)


@pytest.mark.slow        # 30 s: one more interrupted-length run
def test_a_second_start_is_refused_at_once_and_the_first_finishes_as_if_alone(
    tmp_path, tiny_teacher_dir, reference):
  workdir = str(tmp_path)
  first = _start(tiny_teacher_dir, workdir)
  try:
    _wait_for_checkpoint(workdir, first)
    # Paused while the second one starts: mid-run (and holding its lock) however fast this
    # machine finishes the rest, and however slowly the second process starts.
    first.send_signal(signal.SIGSTOP)
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    try:
      second = subprocess.run(_cli_args(tiny_teacher_dir, workdir), cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)
    finally:
      first.send_signal(signal.SIGCONT)
    assert second.returncode != 0 and first.poll() is None
    assert f"in use by PID {first.pid} on host" in second.stderr, second.stderr[-3000:]
    _, stderr = first.communicate(timeout=600)
  finally:
    if first.poll() is None:
      first.kill()
  assert first.returncode == 0, stderr[-3000:]
  _assert_same_as_reference(workdir, reference, tiny_teacher_dir)


@pytest.mark.parametrize("damage", ["truncate", "remove_state"])
def test_corrupt_latest_checkpoint_falls_back_and_is_kept(tmp_path, tiny_teacher_dir, damage):
  workdir = str(tmp_path)
  # Checkpoints every 2 steps: the fall-back is the same at step 4 as at 100, 240 steps sooner.
  config = _config(tiny_teacher_dir, num_train_steps=4, checkpoint_every=2, log_every=2)
  jobs.run(config, workdir)
  ckpt_dir = os.path.join(workdir, "checkpoints")
  assert sorted(os.listdir(ckpt_dir), key=int) == ["2", "4"]
  latest = os.path.join(ckpt_dir, "4", "state")
  if damage == "truncate":
    for dirpath, _, files in os.walk(latest):
      for name in files:
        with open(os.path.join(dirpath, name), "r+b") as f:
          f.truncate(max(0, os.path.getsize(os.path.join(dirpath, name)) // 3))
  else:
    shutil.rmtree(latest)
  config.num_train_steps = 6
  results = jobs.run(config, workdir)
  assert results["checkpoint_step"] == 6
  assert sorted(os.listdir(ckpt_dir), key=int) == ["2", "4", "6"]      # 4 redone from 2
  assert os.listdir(ckpt_dir + ".quarantine") == ["4"]                  # the bad one is kept
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    steps = [json.loads(l)["step"] for l in f if "train/ce" in l]
  assert steps == [2, 4, 4, 6]              # resumed from 2, not from 0 and not from 4


def test_non_finite_loss_stops_with_message_and_keeps_checkpoints(tmp_path, tiny_teacher_dir):
  first, workdir = str(tmp_path / "first"), str(tmp_path / "diverging")
  jobs.run(_config(tiny_teacher_dir, num_train_steps=50), first)
  # Another learning rate is another run (the identity check refuses it in `first`), so the
  # diverging run starts from a copy of the checkpoint in a workdir of its own.
  shutil.copytree(os.path.join(first, "checkpoints"), os.path.join(workdir, "checkpoints"))
  ckpt_dir = os.path.join(workdir, "checkpoints", "50")
  before = {p: os.path.getmtime(os.path.join(dp, p)) for dp, _, fs in os.walk(ckpt_dir) for p in fs}
  config = _config(tiny_teacher_dir, num_train_steps=150, **{"optimizer.learning_rate": 1e30,
                                                            "optimizer.warmup_steps": 0})
  with pytest.raises(FloatingPointError, match=r"Non-finite loss terms \[.*'ce'.*\] at step \d+.*"
                                               r"Last good checkpoint: step 50"):
    jobs.run(config, workdir)
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["50"]
  after = {p: os.path.getmtime(os.path.join(dp, p)) for dp, _, fs in os.walk(ckpt_dir) for p in fs}
  assert before == after


def test_eval_only_reproduces_the_finished_run(tmp_path, tiny_teacher_dir, reference):
  ref_workdir, ref_results, _ = reference
  workdir = str(tmp_path)
  shutil.copytree(os.path.join(ref_workdir, "checkpoints"), os.path.join(workdir, "checkpoints"))
  results = jobs.run(_config(tiny_teacher_dir, eval_only=True), workdir)
  assert results["eval_only"] and results["checkpoint_step"] == STEPS
  assert results["test"] == ref_results["test"]
  assert results["validation"] == ref_results["validation"]
  before_last = STEPS - OVERRIDES["checkpoint_every"]          # a kept checkpoint, not the last
  earlier = jobs.run(_config(tiny_teacher_dir, eval_only=True, eval_step=before_last), workdir)
  assert earlier["checkpoint_step"] == before_last


def test_eval_only_without_checkpoints_is_named(tmp_path, tiny_teacher_dir):
  with pytest.raises(FileNotFoundError, match="eval_only: no student checkpoint in"):
    jobs.run(_config(tiny_teacher_dir, eval_only=True), str(tmp_path))


# Fashion-MNIST (real 28×28 images read by index from TFDS ArrayRecord): a student killed
# part-way and restarted ends bit-for-bit where an uninterrupted one does.
FASHION_STEPS = 300
FASHION_OVERRIDES = {"num_train_steps": FASHION_STEPS, "checkpoint_every": 50, "log_every": 50,
                     "eval_every": 10**6, "method": "tgt_random", "data.augment": "shift"}


@pytest.fixture(scope="module")
def fashion_setup(tmp_path_factory):
  """(data_dir, teacher_dir): the session's real Fashion-MNIST and a runlocal teacher."""
  # pylint: disable-next=g-import-not-at-top  (a test module of tests/e2e, on the path there)
  from test_fashion_mnist import fashion_config, needs_package, prepared_data_dir
  if needs_package.args[0]:
    pytest.skip(needs_package.kwargs["reason"])
  data_dir = prepared_data_dir(tmp_path_factory)
  work = tmp_path_factory.mktemp("fashion_teacher")
  jobs.run(fashion_config("runlocal,job=teacher", data_dir), str(work))
  return data_dir, str(work / "teacher")


def _fashion_config(setup, **extra):
  from test_fashion_mnist import fashion_config  # pylint: disable=g-import-not-at-top
  data_dir, teacher_dir = setup
  return fashion_config("runlocal", data_dir, **{**FASHION_OVERRIDES, "teacher.dir": teacher_dir,
                                                 **extra})


def _fashion_cli(setup, workdir):
  data_dir, teacher_dir = setup
  flags = {**FASHION_OVERRIDES, "teacher.dir": teacher_dir, "data.data_dir": data_dir}
  return [sys.executable, "-m", "tgt_jax.main", "--config=configs/fashion_mnist.py:runlocal",
          f"--workdir={workdir}", *(f"--config.{k}={v}" for k, v in flags.items())]


def _fashion_params(workdir, config):
  from tgt_jax.data import sources  # pylint: disable=g-import-not-at-top
  mesh = sharding.make_mesh()
  source = sources.make_source(config, with_subset=False)
  _, _, target, _ = classification.init_student(config, source, mesh)
  ckpt = checkpointing.Checkpointer(os.path.join(workdir, "checkpoints"))
  state, _ = ckpt.restore(target, FASHION_STEPS)
  ckpt.close()
  return jax.device_get(state.params)


@pytest.mark.slow        # ~1.5 min: the teacher, an uninterrupted run, a killed run and its restart
def test_fashion_mnist_sigkill_then_restart_matches_uninterrupted_bit_for_bit(tmp_path,
                                                                              fashion_setup):
  reference = str(tmp_path / "reference")
  config = _fashion_config(fashion_setup)
  ref_results = jobs.run(config, reference)
  workdir = str(tmp_path / "killed")
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
  proc = subprocess.Popen(_fashion_cli(fashion_setup, workdir), cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  _wait_for_checkpoint(workdir, proc)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not os.path.exists(os.path.join(workdir, "results.json"))   # really killed mid-way
  out = subprocess.run(_fashion_cli(fashion_setup, workdir), cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  restored = int(out.stderr.split("Restored student checkpoint at step ")[1].split()[0])
  assert 0 < restored < FASHION_STEPS
  results = json.loads(open(os.path.join(workdir, "results.json")).read())
  assert _comparable(results) == _comparable(json.loads(json.dumps(ref_results)))
  for a, b in zip(jax.tree.leaves(_fashion_params(workdir, config)),
                  jax.tree.leaves(_fashion_params(reference, config))):
    np.testing.assert_array_equal(a, b)
