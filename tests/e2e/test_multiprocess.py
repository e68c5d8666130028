"""The multi-host path for real: 2 processes on loopback, 2 fake CPU devices each.

Both run the CLI (`--coordinator_address`, `--num_processes`, `--process_id`)
into one workdir and form one 4-device mesh. They must train exactly as one
process with 4 devices does given the same global batch and seed, and their
checkpoints must restore in a single process of another topology.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from tgt_jax import checkpointing, sharding
from tgt_jax.teachers import generative
from tgt_jax.data import datasets
from tgt_jax import jobs
from tgt_jax.tasks import classification

from conftest import FAST_COMPILE, digits_config

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
STEPS = 24
OVERRIDES = {"num_train_steps": STEPS, "log_every": 1, "eval_every": 12, "checkpoint_every": 12,
             "batch_size": 32, "eval_batch_size": 64}
TIMEOUT = 300     # seconds for any group of processes; a hang fails the test
PREEMPTED = 143   # tgt_jax.main.PREEMPTED_EXIT_CODE
# Compiling is most of each process's time; every process here gets the same options, and
# what is compared with this process's own runs (parameters, losses at rtol 1e-4, accuracies)
# moves by less than 1e-6 with them.
SUBPROCESS_FAST_COMPILE = [f"--{k}={str(v).lower()}" for k, v in FAST_COMPILE.items()]


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _start(workdir, logs, devices, overrides, process=None, port=None):
  """`python -m tgt_jax.main` with `devices` fake CPU devices; process=(id, count) joins a group."""
  args = [sys.executable, "-m", "tgt_jax.main", "--config=configs/digits.py:runlocal",
          f"--workdir={workdir}", *(f"--config.{k}={v}" for k, v in overrides.items())]
  name = "single"
  if process is not None:
    args += [f"--coordinator_address=127.0.0.1:{port}", f"--num_processes={process[1]}",
             f"--process_id={process[0]}"]
    name = f"process{process[0]}"
  env = {**os.environ, "JAX_PLATFORMS": "cpu",
         "XLA_FLAGS": " ".join([f"--xla_force_host_platform_device_count={devices}",
                                *SUBPROCESS_FAST_COMPILE])}
  log = open(os.path.join(logs, f"{os.path.basename(workdir)}_{name}.log"), "w+")
  return subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                          text=True), log


def _start_group(workdir, logs, overrides, num_processes=2, devices=2):
  port = _free_port()
  return [_start(workdir, logs, devices, overrides, (i, num_processes), port)
          for i in range(num_processes)]


def _wait(started, timeout=TIMEOUT, until=None):
  """Return codes and logs of all processes; kills every one on a timeout or a failure.

  A process of a group that fails leaves the others waiting on it for minutes,
  so the first failure ends the group. `until()` returning True stops the wait
  early (returning None for processes still running).
  """
  deadline = time.time() + timeout
  while time.time() < deadline:
    codes = [p.poll() for p, _ in started]
    failed = any(c not in (None, 0, PREEMPTED) for c in codes)
    if None not in codes or failed or (until is not None and until()):
      break
    time.sleep(0.1)
  else:
    codes = None
  if codes is None or failed:
    for p, _ in started:
      if p.poll() is None:
        p.kill()
        p.wait()
  logs = []
  for _, log in started:
    log.seek(0)
    logs.append(log.read())
  if codes is None:
    pytest.fail(f"timed out after {timeout} s:\n" + "\n".join(l[-3000:] for l in logs))
  return codes, logs


def _metrics(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def _results(workdir):
  with open(os.path.join(workdir, "results.json")) as f:
    return json.load(f)


def _train_losses(workdir):
  """{step: {train/term: value}} without timings."""
  return {r["step"]: {k: v for k, v in r.items() if k.startswith("train/")}
          for r in _metrics(workdir) if "train/ce" in r}


def _params(workdir, config, step):
  _, _, target, _ = classification.init_student(config, datasets.load("digits"), sharding.make_mesh())
  ckpt = checkpointing.Checkpointer(os.path.join(workdir, "checkpoints"))
  try:
    state, meta = ckpt.restore(target, step)
  finally:
    ckpt.close()
  assert meta["step"] == step
  return jax.device_get(state.params)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_teacher_dir):
  """(two-process workdir, one-process workdir): the same command, run concurrently."""
  base = tmp_path_factory.mktemp("multiprocess")
  two, one = str(base / "two"), str(base / "one")
  overrides = {**OVERRIDES, "teacher.dir": tiny_teacher_dir}
  started = _start_group(two, str(base), overrides) + [_start(one, str(base), 4, overrides)]
  codes, logs = _wait(started)
  for code, log in zip(codes, logs):
    assert code == 0, log[-3000:]
  assert all("JAX: 2 process(es), 4 device(s)" in log for log in logs[:2])
  assert "JAX: 1 process(es), 4 device(s)" in logs[2]
  return two, one


def _config(teacher_dir, **extra):
  return digits_config("runlocal", **{**OVERRIDES, "teacher.dir": teacher_dir, **extra})


def test_two_processes_train_like_one(runs):
  two, one = runs
  losses, reference = _train_losses(two), _train_losses(one)
  assert sorted(losses) == list(range(1, STEPS + 1))   # one line per step: process 0 alone writes
  assert len([r for r in _metrics(two) if "train/ce" in r]) == STEPS
  for step, terms in reference.items():
    assert set(losses[step]) == set(terms)
    for key, value in terms.items():
      np.testing.assert_allclose(losses[step][key], value, rtol=1e-5, atol=1e-7,
                                 err_msg=f"{key} at step {step}")
  results, ref = _results(two), _results(one)
  assert results["num_devices"] == ref["num_devices"] == 4
  assert results["checkpoint_step"] == STEPS
  for split in ("test", "validation"):
    np.testing.assert_allclose(results[split]["per_class_accuracy"],
                               ref[split]["per_class_accuracy"], rtol=0, atol=1e-6)
  assert results["test_accuracy"] > 0.15    # above chance (0.1): the equality is not vacuous
  assert sorted(os.listdir(os.path.join(two, "checkpoints")), key=int) == ["12", "24"]


def test_two_process_checkpoint_restores_in_one_process(runs, tiny_teacher_dir, tmp_path):
  """8 devices in this process: another topology than the one that wrote the checkpoint."""
  two, one = runs
  config = _config(tiny_teacher_dir)
  for a, b in zip(jax.tree.leaves(_params(two, config, STEPS)),
                  jax.tree.leaves(_params(one, config, STEPS))):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

  evaldir = str(tmp_path / "eval")
  shutil.copytree(os.path.join(two, "checkpoints"), os.path.join(evaldir, "checkpoints"))
  results = jobs.run(_config(tiny_teacher_dir, eval_only=True), evaldir)
  assert results["eval_only"] and results["checkpoint_step"] == STEPS
  assert results["num_devices"] == 8
  assert results["test"] == _results(two)["test"]

  resumed = str(tmp_path / "resumed")       # training goes on from the 2-process step 12
  shutil.copytree(os.path.join(two, "checkpoints", "12"),
                  os.path.join(resumed, "checkpoints", "12"))
  results = jobs.run(_config(tiny_teacher_dir), resumed)
  assert results["checkpoint_step"] == STEPS
  losses, reference = _train_losses(resumed), _train_losses(one)
  assert sorted(losses) == list(range(13, STEPS + 1))
  for step, terms in losses.items():
    for key, value in terms.items():
      np.testing.assert_allclose(value, reference[step][key], rtol=1e-4, atol=1e-6,
                                 err_msg=f"{key} at step {step}")


@pytest.mark.slow
def test_from_scratch_then_sigterm_to_one_process_stops_both_at_one_step(tmp_path):
  """An empty workdir: the 2 processes train and save their teacher, then the student.

  A SIGTERM to process 1 alone reaches process 0 through JAX's coordination
  service: both save the same step and exit with 143.
  """
  workdir = str(tmp_path / "run")
  overrides = {**OVERRIDES, "num_train_steps": 5000, "log_every": 10, "checkpoint_every": 10,
               "eval_every": 10**6}
  started = _start_group(workdir, str(tmp_path), overrides)
  ckpt_dir = os.path.join(workdir, "checkpoints")
  _, logs = _wait(started, until=lambda: os.path.isdir(os.path.join(ckpt_dir, "10")))
  assert all(p.poll() is None for p, _ in started), "\n".join(l[-3000:] for l in logs)
  started[1][0].send_signal(signal.SIGTERM)
  codes, logs = _wait(started)
  saved = []
  for code, log in zip(codes, logs):
    assert code == PREEMPTED, log[-3000:]
    assert "Teacher report" in log
    saved.append(int(log.split("Preempted: saved step ")[1].split()[0]))
  assert saved[0] == saved[1] and 10 <= saved[0] < 5000
  assert str(saved[0]) in os.listdir(ckpt_dir)
  assert not os.path.exists(os.path.join(workdir, "results.json"))
  _params(workdir, digits_config("runlocal", **overrides), saved[0])   # restores in one process
  digits = datasets.load("digits")
  meta, _ = generative.load(os.path.join(workdir, "teacher"), digits.image_shape, digits.num_classes)
  assert meta["report"]["labeler_test_accuracy"] > 0.5


@pytest.mark.slow       # two processes synthesize, then the same cache in one (~40 s on 2 cores)
def test_two_processes_write_one_cache_with_the_records_of_one(tiny_teacher_dir, tmp_path):
  """job=synthesize in 2 processes: each writes its shard, process 0 the manifest; every
  (example, sample) record equals the one a single process writes (keys depend on the example
  alone), and a student reads the 2-shard cache."""
  from tgt_jax.data import synthetic_cache  # pylint: disable=g-import-not-at-top
  overrides = {"job": "synthesize", "teacher.dir": tiny_teacher_dir,
               "tgt_cache.samples_per_example": 3}
  codes, logs = _wait(_start_group(str(tmp_path / "two"), str(tmp_path), overrides))
  assert codes == [0, 0], logs
  single = jobs.run(digits_config("runlocal", **overrides), str(tmp_path / "one"))
  two = synthetic_cache.Reader(str(tmp_path / "two" / "synthetic"))
  one = synthetic_cache.Reader(single["cache_dir"])
  assert len(two.manifest["shards"]) == 2 and len(one.manifest["shards"]) == 1
  assert two.manifest["settings"] == one.manifest["settings"]
  examples = np.repeat(np.arange(one.num_examples), 3)
  samples = np.tile(np.arange(3), one.num_examples)
  for name, values in one.read(examples, samples).items():
    np.testing.assert_array_equal(two.read(examples, samples)[name], values, err_msg=name)
  results = jobs.run(digits_config("runlocal", **{
      "teacher.dir": tiny_teacher_dir, "student.model": "mlp",
      "tgt_cache.dir": str(tmp_path / "two" / "synthetic")}), str(tmp_path / "student"))
  assert results["checkpoint_step"] == 6
