"""workdir.py: prepare, run identity, and the lock that keeps two runs out of one workdir."""

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time

import ml_collections
import pytest

from tgt_jax import workdir

from conftest import digits_config

ROOT = os.path.join(os.path.dirname(__file__), "..")


# -- prepare ------------------------------------------------------------------------------


def test_prepare_creates_nested_directories(tmp_path):
  path = workdir.prepare(tmp_path / "a" / "b")
  assert path.is_dir()
  assert workdir.prepare(tmp_path / "a" / "b") == path      # an existing one is fine


def test_prepare_refuses_a_regular_file(tmp_path):
  (tmp_path / "f").write_text("x")
  with pytest.raises(workdir.WorkdirError, match=r"^--workdir '.*/f' is a regular file"):
    workdir.prepare(tmp_path / "f")


def test_prepare_names_a_path_whose_parent_is_a_file(tmp_path):
  (tmp_path / "f").write_text("x")
  with pytest.raises(workdir.WorkdirError,
                     match=r"^--workdir '.*/f/run' cannot be created: \w+Error"):
    workdir.prepare(tmp_path / "f" / "run")


def _unwritable_parent(tmp_path):
  """A directory this user may not create entries in (root: sysfs, where even root may not)."""
  if os.geteuid() != 0:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    return str(locked)
  try:
    os.mkdir("/sys/tgt_jax_probe")
  except PermissionError:
    return "/sys"
  except OSError:
    pass
  else:
    os.rmdir("/sys/tgt_jax_probe")
  pytest.skip("no directory here refuses root")


def test_prepare_names_a_path_without_permission(tmp_path):
  parent = _unwritable_parent(tmp_path)
  with pytest.raises(workdir.WorkdirError, match=rf"^--workdir '{parent}/run' cannot be created: "
                                                 r"PermissionError"):
    workdir.prepare(os.path.join(parent, "run"))


# -- identity -----------------------------------------------------------------------------


def test_identity_ignores_resumable_keys_only():
  base = workdir.identity(digits_config())
  longer = digits_config(num_train_steps=9999, log_every=7, eval_every=7, checkpoint_every=7,
                         keep_checkpoints=1, eval_batch_size=8, eval_only=True, eval_step=3,
                         grid_examples=4, **{"teacher.train_if_missing": False})
  assert workdir.identity(longer) == base
  assert workdir.identity(digits_config(method="kd")) != base
  assert workdir.identity(digits_config(seed=1)) != base
  assert base["student.model"] == "cnn_small" and "num_train_steps" not in base


def test_identity_is_json_that_survives_a_round_trip():
  config = ml_collections.ConfigDict(dict(
      pixel_range=(-1.0, 1.0), epsilon=float("inf"), splits={"validation": "val"},
      nested=ml_collections.ConfigDict(dict(k=3, names=["a", "b"])), empty={}))
  ident = workdir.identity(config)
  assert ident == {"pixel_range": [-1.0, 1.0], "epsilon": "inf", "splits.validation": "val",
                   "nested.k": 3, "nested.names": ["a", "b"], "empty": {}}
  assert json.loads(json.dumps(ident)) == ident


def test_same_identity_resumes_quietly(tmp_path):
  ident = workdir.identity(digits_config())
  workdir.record_or_check(tmp_path, ident, "student run")
  recorded = json.loads((tmp_path / workdir.IDENTITY_FILE).read_text())
  assert recorded == {"what": "student run", "identity": ident}
  workdir.record_or_check(tmp_path, workdir.identity(digits_config(num_train_steps=50)),
                          "student run")
  assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]     # renamed, not left


def test_mismatch_lists_each_key_with_both_values(tmp_path):
  workdir.record_or_check(tmp_path, {**workdir.identity(digits_config()), "old_only": 1},
                          "student run")
  new = {**workdir.identity(digits_config(method="kd", seed=3,
                                          **{"student.model": "mlp"})), "teacher.fp": "abc"}
  with pytest.raises(workdir.IdentityMismatch) as e:
    workdir.record_or_check(tmp_path, new, "student run")
  message = str(e.value)
  for line in ("method: recorded 'tgt_random', now 'kd'", "seed: recorded 0, now 3",
               "student.model: recorded 'cnn_small', now 'mlp'",
               "old_only: recorded 1, now (absent)", "teacher.fp: recorded (absent), now 'abc'"):
    assert line in message, message
  assert "5 setting(s) differ" in message and "another --workdir" in message
  assert "restore the original values" in message


def test_write_false_never_writes(tmp_path):
  workdir.record_or_check(tmp_path, {"a": 1}, "student run", write=False)
  assert os.listdir(tmp_path) == []


def test_damaged_identity_file_is_named(tmp_path):
  (tmp_path / workdir.IDENTITY_FILE).write_text("{trunc")
  with pytest.raises(workdir.IdentityMismatch, match=r"run_identity.json is damaged"):
    workdir.record_or_check(tmp_path, {"a": 1}, "student run")


# -- the lock -----------------------------------------------------------------------------

# The holder sleeps in short slices, as a job's main thread never blocks long in one call: a
# Python signal handler runs between bytecodes, so a SIGTERM that lands after the last check and
# before the sleep's system call (a window that JAX's threads, taking the GIL the sleep releases,
# widen) is acted on only when that sleep returns. One 120 s sleep made the holder miss the
# signal now and then (2 of 8 tries on a loaded machine) and outlive the test's wait.
HOLDER = """
import sys, time
from tgt_jax import workdir
with workdir.WorkdirLock(sys.argv[1]):
  print("held", flush=True)
  for _ in range(1200):
    time.sleep(0.1)
"""


def _lock_file(path):
  return os.path.join(path, workdir.LOCK_FILE)


def test_second_process_is_refused_at_once_and_sigterm_releases(tmp_path):
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "held", holder.stderr.read()
    record = json.loads(open(_lock_file(tmp_path)).read())
    assert record["pid"] == holder.pid and record["host"] == socket.gethostname()
    assert record["argv"] == ["-c", str(tmp_path)] and record["start_time"]
    start = time.time()
    with pytest.raises(workdir.WorkdirInUse,
                       match=rf"in use by PID {holder.pid} on host {socket.gethostname()} since "
                             r".*; wait for it, or use another --workdir"):
      with workdir.WorkdirLock(tmp_path):
        pass
    assert time.time() - start < 5
    assert os.path.exists(_lock_file(tmp_path))              # the holder's lock is untouched
    holder.send_signal(signal.SIGTERM)
    assert holder.wait(timeout=60) == 143      # unwinding takes ~1 s; the rest is slack for load
    assert not os.path.exists(_lock_file(tmp_path))          # released on the signal path
  finally:
    if holder.poll() is None:
      holder.kill()
      holder.wait()


def _dead_pid():
  proc = subprocess.Popen([sys.executable, "-c", "pass"])
  proc.wait()
  return proc.pid


def test_stale_lock_of_a_dead_pid_is_taken_over_with_a_warning(tmp_path, caplog):
  pid = _dead_pid()
  with open(_lock_file(tmp_path), "w") as f:
    json.dump({"pid": pid, "host": socket.gethostname(), "start_time": "then", "token": "t"}, f)
  with caplog.at_level(logging.WARNING):
    with workdir.WorkdirLock(tmp_path):
      assert json.loads(open(_lock_file(tmp_path)).read())["pid"] == os.getpid()
  assert "Taking over the stale lock" in caplog.text and f"PID {pid}" in caplog.text
  assert not os.path.exists(_lock_file(tmp_path))


def test_lock_of_a_previous_incarnation_with_our_pid_is_stale(tmp_path):
  """A restarted container may give the new run the dead run's PID."""
  with open(_lock_file(tmp_path), "w") as f:
    json.dump({"pid": os.getpid(), "host": socket.gethostname(), "token": "old"}, f)
  with workdir.WorkdirLock(tmp_path):
    pass


def test_this_process_cannot_take_its_own_lock_twice(tmp_path):
  with workdir.WorkdirLock(tmp_path):
    with pytest.raises(workdir.WorkdirInUse, match=f"PID {os.getpid()}"):
      with workdir.WorkdirLock(tmp_path):
        pass
    assert os.path.exists(_lock_file(tmp_path))
  assert not os.path.exists(_lock_file(tmp_path))


def test_lock_of_another_host_is_refused_with_how_to_remove_it(tmp_path):
  with open(_lock_file(tmp_path), "w") as f:
    json.dump({"pid": 1, "host": "elsewhere-7", "start_time": "then", "argv": ["x"]}, f)
  with pytest.raises(workdir.WorkdirInUse, match=r"PID 1 on host elsewhere-7 since then .*cannot "
                                                 r"tell.*if that run is gone, remove .*LOCK"):
    with workdir.WorkdirLock(tmp_path):
      pass
  assert os.path.exists(_lock_file(tmp_path))


def test_unreadable_lock_is_refused_and_named(tmp_path, monkeypatch):
  monkeypatch.setattr(time, "sleep", lambda s: None)
  with open(_lock_file(tmp_path), "w") as f:
    f.write("")
  with pytest.raises(workdir.WorkdirInUse, match=r"cannot be read.*remove .*LOCK"):
    with workdir.WorkdirLock(tmp_path):
      pass


def test_released_on_exception_and_on_system_exit(tmp_path):
  with pytest.raises(RuntimeError):
    with workdir.WorkdirLock(tmp_path):
      assert os.path.exists(_lock_file(tmp_path))
      raise RuntimeError("boom")
  assert not os.path.exists(_lock_file(tmp_path))
  with pytest.raises(SystemExit):
    with workdir.WorkdirLock(tmp_path):
      raise SystemExit(143)
  assert not os.path.exists(_lock_file(tmp_path))


def test_sigterm_handler_is_installed_while_held_and_restored(tmp_path):
  before = signal.getsignal(signal.SIGTERM)
  with workdir.WorkdirLock(tmp_path):
    if before == signal.SIG_DFL:
      assert signal.getsignal(signal.SIGTERM) != signal.SIG_DFL
  assert signal.getsignal(signal.SIGTERM) == before


def test_best_effort_lock_without_exclusive_create(tmp_path, monkeypatch):
  """The gs:// path (write if absent, read back), exercised on a local directory."""
  monkeypatch.setattr(workdir.WorkdirLock, "READ_BACK_DELAY_S", 0.0)
  with workdir.WorkdirLock(tmp_path, exclusive_create=False):
    with pytest.raises(workdir.WorkdirInUse, match=f"PID {os.getpid()}"):
      with workdir.WorkdirLock(tmp_path, exclusive_create=False):
        pass
  assert not os.path.exists(_lock_file(tmp_path))


def test_an_old_empty_lock_is_taken_over_with_a_message(tmp_path, caplog):
  """A start that could not write its lock (a full disk) used to leave an empty LOCK that
  blocked every rerun until removed by hand."""
  with open(_lock_file(tmp_path), "w"):
    pass
  old = time.time() - 2 * workdir.WorkdirLock.EMPTY_LOCK_GRACE_S
  os.utime(_lock_file(tmp_path), (old, old))
  with caplog.at_level(logging.WARNING):
    with workdir.WorkdirLock(tmp_path):
      assert json.loads(open(_lock_file(tmp_path)).read())["pid"] == os.getpid()
  assert "Taking over the empty lock" in caplog.text
  assert not os.path.exists(_lock_file(tmp_path))


def test_a_lock_that_cannot_be_written_leaves_nothing_behind(tmp_path, monkeypatch):
  def full_disk(*args, **kwargs):
    raise OSError(28, "No space left on device")
  monkeypatch.setattr(os, "fdopen", full_disk)
  with pytest.raises(workdir.WorkdirError,
                     match=r"^Cannot write the lock .*LOCK \(.*No space left on "
                           r"device\): free space"):
    with workdir.WorkdirLock(tmp_path):
      pass
  assert not os.path.exists(_lock_file(tmp_path))


BRIEF_HOLDER = """
import sys, time
from tgt_jax import workdir
with workdir.WorkdirLock(sys.argv[1]):
  print("held", flush=True)
  time.sleep(float(sys.argv[2]))
print("released", flush=True)
"""


def test_a_second_writer_waits_for_a_live_holder_then_takes_the_lock(tmp_path, caplog):
  """An artifact's second writer (e.g. a student that also needs a missing teacher) waits
  instead of racing the first one."""
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  holder = subprocess.Popen([sys.executable, "-c", BRIEF_HOLDER, str(tmp_path), "2"], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "held", holder.stderr.read()
    with caplog.at_level(logging.WARNING):
      with workdir.WorkdirLock(tmp_path, wait_s=300, what="teacher directory"):
        assert holder.stdout.readline().strip() == "released"   # only once the holder let go
    assert f"in use by PID {holder.pid}" in caplog.text and "Waiting (up to 300 s)" in caplog.text
    with workdir.WorkdirLock(tmp_path, wait_s=300):
      with pytest.raises(workdir.WorkdirInUse, match="teacher directory .* in use by PID"):
        with workdir.WorkdirLock(tmp_path, wait_s=300, what="teacher directory"):
          pass                                    # our own lock: refused at once, no wait
  finally:
    if holder.poll() is None:
      holder.kill()
    holder.wait()
