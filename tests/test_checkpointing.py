"""checkpointing.py: async save, keep-last-N, restore into the same layout, signals, and
which checkpoints count as damaged (moved aside) or as another run's (never moved)."""

import hashlib
import logging
import os
import shutil
import signal
import threading
import time
from typing import Any

import flax
import jax
import numpy as np
import optax
import pytest

from tgt_jax import checkpointing, sharding


def test_save_restore_and_keep_last(tmp_path):
  mesh = sharding.make_mesh()
  state = sharding.replicate(mesh, {"w": np.arange(6, dtype=np.float32), "step": np.int32(0)})
  ckpt = checkpointing.Checkpointer(tmp_path / "ckpt", max_to_keep=2)
  for step in (1, 2, 3):
    ckpt.save(step, jax.tree.map(lambda x, s=step: x + s, state), {"step": step})
  ckpt.wait()
  assert ckpt.all_steps() == [2, 3] and ckpt.latest_step() == 3
  restored, meta = ckpt.restore(state)
  np.testing.assert_array_equal(restored["w"], np.arange(6) + 3)
  assert meta == {"step": 3}
  assert restored["w"].sharding.is_fully_replicated
  earlier, _ = ckpt.restore(state, step=2)
  np.testing.assert_array_equal(earlier["w"], np.arange(6) + 2)
  ckpt.close()


def test_empty_directory_has_no_latest(tmp_path):
  ckpt = checkpointing.Checkpointer(tmp_path / "empty")
  assert ckpt.latest_step() is None
  ckpt.close()


def test_state_saved_on_eight_devices_restores_on_one(tmp_path):
  eight = sharding.make_mesh()
  one = sharding.make_mesh(jax.devices()[:1])
  ckpt = checkpointing.Checkpointer(tmp_path / "ckpt")
  ckpt.save(4, sharding.replicate(eight, {"w": np.ones(3, np.float32)}))
  ckpt.wait()
  restored, _ = ckpt.restore(sharding.replicate(one, {"w": np.zeros(3, np.float32)}))
  np.testing.assert_array_equal(restored["w"], 1.0)
  assert restored["w"].sharding.mesh.devices.size == 1
  ckpt.close()


def test_keep_checkpoints_must_be_at_least_one(tmp_path):
  for bad in (0, -1, 1.5, True):
    with pytest.raises(ValueError, match=rf"keep_checkpoints \(max_to_keep\) must be an integer "
                                         rf">= 1, got {bad!r}"):
      checkpointing.Checkpointer(tmp_path / "ckpt", max_to_keep=bad)


# -- signals ------------------------------------------------------------------------------


def _signal_main_thread(signum):
  """Sends `signum` to this process's main thread, where Python runs signal handlers.

  os.kill(os.getpid(), ...) is process-directed: the kernel may hand it to any of JAX's
  threads, and the handler then runs only once the main thread next checks for signals,
  which on a loaded machine can be after the assertion that follows (a flaky test). A
  thread-directed signal to the main thread is taken on return from the call, and
  signal.pthread_kill runs the handler before it returns.
  """
  signal.pthread_kill(threading.main_thread().ident, signum)


def _wait_for(condition, seconds=30.0):
  """Polls `condition` for up to `seconds` (a bounded wait for a handler, should one lag)."""
  deadline = time.monotonic() + seconds
  while not condition() and time.monotonic() < deadline:
    time.sleep(0.01)
  return condition()


def test_sigterm_is_noted_with_exit_code_143():
  with checkpointing.PreemptionWatch() as watch:
    assert not watch.reached(1)
    _signal_main_thread(signal.SIGTERM)
    assert _wait_for(lambda: watch.reached(1)) and watch.exit_code == 143
    err = watch.preempted(7, "/ckpt")
  assert isinstance(err, checkpointing.Preempted) and err.exit_code == 143
  assert str(err).startswith("Preempted: saved step 7 to /ckpt; run the same command")


def test_first_ctrl_c_saves_with_exit_code_130_and_second_exits_at_once(caplog):
  before = signal.getsignal(signal.SIGINT)
  with caplog.at_level(logging.WARNING):
    with checkpointing.PreemptionWatch() as watch:
      _signal_main_thread(signal.SIGINT)
      assert _wait_for(lambda: watch.reached(3)) and watch.exit_code == 130
      assert watch.preempted(3, "/ckpt").exit_code == 130
      with pytest.raises(KeyboardInterrupt):
        _signal_main_thread(signal.SIGINT)
        _wait_for(lambda: False)   # the previous handler raises here (at once; at most 30 s)
  assert ("Ctrl-C: saving at the end of this step; press Ctrl-C again to exit at once"
          in caplog.text)
  assert signal.getsignal(signal.SIGINT) == before


def test_preempted_defaults_to_sigterm_code():
  assert checkpointing.Preempted("x").exit_code == 143


# -- the corruption policy ----------------------------------------------------------------


@flax.struct.dataclass
class _State:
  step: jax.Array
  params: Any
  opt_state: Any


def _train_state(width, key="dense"):
  params = {key: {"kernel": np.ones((3, width), np.float32), "bias": np.zeros(width, np.float32)}}
  tx = optax.adam(1e-3)
  return sharding.replicate(sharding.make_mesh(),
                            _State(np.int32(0), params, tx.init(params)))


def _tree_hash(directory):
  """sha256 of every file's relative path and bytes (and of every directory's name)."""
  digest = hashlib.sha256()
  for dirpath, dirnames, files in sorted(os.walk(directory)):
    dirnames.sort()
    digest.update(os.path.relpath(dirpath, directory).encode())
    for name in sorted(files):
      digest.update(name.encode())
      with open(os.path.join(dirpath, name), "rb") as f:
        digest.update(f.read())
  return digest.hexdigest()


def _saved(tmp_path, steps=(1, 2), width=4):
  ckpt = checkpointing.Checkpointer(tmp_path / "ckpt")
  for step in steps:
    ckpt.save(step, _train_state(width), {"step": step})
  ckpt.close()
  return checkpointing.Checkpointer(tmp_path / "ckpt")


def _truncate(directory):
  for dirpath, _, files in os.walk(directory):
    for name in files:
      with open(os.path.join(dirpath, name), "r+b") as f:
        f.truncate(os.path.getsize(os.path.join(dirpath, name)) // 3)


def test_train_state_with_optimizer_restores_through_the_tree_check(tmp_path):
  ckpt = _saved(tmp_path)
  state, meta = ckpt.restore_latest_intact(_train_state(4))
  assert meta == {"step": 2} and jax.tree.structure(state) == jax.tree.structure(_train_state(4))
  ckpt.close()


@pytest.mark.parametrize("other,cause", [
    (lambda: _train_state(5), r"dense/kernel has shape \(3, 4\) in the checkpoint, \(3, 5\)"),
    (lambda: _train_state(4, key="hidden"), r"is missing from the checkpoint"),
])
def test_checkpoint_of_another_model_is_named_and_never_moved(tmp_path, other, cause):
  ckpt = _saved(tmp_path)
  before = _tree_hash(tmp_path)
  for may_move in (True, False):
    with pytest.raises(checkpointing.CheckpointMismatch,
                       match=rf"checkpoint at step 2 in .*ckpt belongs to a different "
                             rf"model/config: .*{cause}"):
      ckpt.restore_latest_intact(other(), may_move=may_move)
  with pytest.raises(checkpointing.CheckpointMismatch, match="step 1 "):
    ckpt.restore(other(), step=1)
  ckpt.close()
  assert _tree_hash(tmp_path) == before
  assert not (tmp_path / "ckpt.quarantine").exists()


def test_damaged_checkpoint_with_may_move_false_is_named_and_left(tmp_path):
  ckpt = _saved(tmp_path)
  _truncate(tmp_path / "ckpt" / "2" / "state")
  before = _tree_hash(tmp_path)
  with pytest.raises(checkpointing.DamagedArtifact,
                     match=r"step 2 in .*ckpt does not (read|restore) \(\w+: .*Nothing was moved"):
    ckpt.restore_latest_intact(_train_state(4), may_move=False)
  ckpt.close()
  assert _tree_hash(tmp_path) == before
  assert not (tmp_path / "ckpt.quarantine").exists()


@pytest.mark.parametrize("damage", ["truncate", "remove_state"])
def test_damaged_checkpoint_is_quarantined_when_it_may_move(tmp_path, damage):
  ckpt = _saved(tmp_path)
  if damage == "truncate":
    _truncate(tmp_path / "ckpt" / "2" / "state")
  else:
    shutil.rmtree(tmp_path / "ckpt" / "2" / "state")
  _, meta = ckpt.restore_latest_intact(_train_state(4))
  assert meta == {"step": 1}
  assert ckpt.all_steps() == [1]
  assert os.listdir(tmp_path / "ckpt.quarantine") == ["2"]
  ckpt.close()


def test_read_only_checkpointer_creates_nothing(tmp_path):
  ckpt = checkpointing.Checkpointer(tmp_path / "absent", read_only=True)
  assert ckpt.latest_step() is None
  assert ckpt.restore_latest_intact(_train_state(4), may_move=False) is None
  ckpt.close()
  assert not (tmp_path / "absent").exists()


def _no_space(*args, **kwargs):
  raise OSError(28, "No space left on device")


def test_a_save_that_fails_is_one_line_naming_the_step(tmp_path, monkeypatch):
  ckpt = checkpointing.Checkpointer(tmp_path / "ckpt", max_to_keep=2, async_save=False)
  state = {"w": np.zeros(3, np.float32)}
  ckpt.save(1, state)
  ckpt.wait()
  monkeypatch.setattr(ckpt._manager, "save", _no_space)
  with pytest.raises(checkpointing.WriteFailed,
                     match=r"^Saving the student checkpoint at step 1 .* \(OSError: .*No space "
                           r"left on device\).*Free space .*resume") as e:
    ckpt.save(2, state)
  assert len(str(e.value).splitlines()) == 1


def test_restores_say_what_they_restore(tmp_path, caplog):
  ckpt = checkpointing.Checkpointer(tmp_path / "ckpt", async_save=False, label="labeler")
  ckpt.save(1, {"w": np.zeros(3, np.float32)})
  ckpt.wait()
  with caplog.at_level(logging.INFO):
    ckpt.restore({"w": np.zeros(3, np.float32)})
  assert "Restored labeler checkpoint at step 1" in caplog.text
  assert "student" not in caplog.text
