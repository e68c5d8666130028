"""A thin wrapper around orbax's CheckpointManager for the student's train state.

Only the student is checkpointed (teachers are reloaded from their own
directory). Saves are asynchronous; every process calls save and restore (the
manager coordinates them), so multi-host runs do not hang on a process-0-only
save. A JSON `meta` item travels with each state (step, method).

Resuming takes the newest checkpoint that restores. One that does not (a
truncated file, a missing directory) is reported and moved to
`<dir>.quarantine/`: never deleted, and out of the way of later saves and of
`max_to_keep`, which would otherwise count it as a good one.
"""

import logging
import os
import signal
import time

import jax
import orbax.checkpoint as ocp
from etils import epath
from jax.experimental import multihost_utils


def absolute(path):
  """orbax refuses relative paths: resolve local ones against the working directory."""
  path = epath.Path(path)
  return path if "://" in str(path) or path.is_absolute() else epath.Path(os.path.abspath(path))


class Checkpointer:

  def __init__(self, directory, max_to_keep=3, async_save=True):
    self.directory = absolute(directory)
    self.quarantine = self.directory.parent / (self.directory.name + ".quarantine")
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                           enable_async_checkpointing=async_save)
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_names=("state", "meta"))

  def latest_step(self):
    return self._manager.latest_step()

  def all_steps(self):
    return list(self._manager.all_steps())

  def save(self, step, state, meta=None):
    """Starts an async save of `state` at `step`; the caller decides when to save."""
    args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                              meta=ocp.args.JsonSave(meta or {}))
    return self._manager.save(step, args=args, force=True)

  def restore(self, target_state, step=None):
    """(state, meta) at `step` (default latest), laid out like `target_state`."""
    step = self.latest_step() if step is None else step
    if step is None or step not in self.all_steps():
      raise FileNotFoundError(f"No checkpoint at step {step} in {self.directory}; "
                              f"available: {self.all_steps()}.")
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target_state)
    restored = self._manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                      meta=ocp.args.JsonRestore()))
    logging.info("Restored student checkpoint at step %d from %s", step, self.directory)
    return restored["state"], restored["meta"]

  def restore_latest_intact(self, target_state):
    """(state, meta) of the newest checkpoint that restores, or None if there is none."""
    for step in sorted(self.all_steps(), reverse=True):
      try:
        return self.restore(target_state, step)
      except Exception as e:  # pylint: disable=broad-except  (corruption takes many forms)
        logging.warning("Checkpoint at step %d in %s does not restore (%s: %s); moving it to %s "
                        "and trying the previous one.", step, self.directory, type(e).__name__,
                        str(e)[:300], self.quarantine)
        self._quarantine(step)
    return None

  def _quarantine(self, step):
    if jax.process_index() == 0:
      self.quarantine.mkdir(parents=True, exist_ok=True)
      target = self.quarantine / f"{step}"
      if target.exists():
        target = self.quarantine / f"{step}.{int(time.time())}"
      (self.directory / str(step)).rename(target)
    multihost_utils.sync_global_devices(f"quarantine_{step}")
    self._manager.reload()

  def wait(self):
    self._manager.wait_until_finished()

  def close(self):
    self._manager.wait_until_finished()
    self._manager.close()


class Preempted(Exception):
  """Raised after a SIGTERM: the state was saved, the next start resumes."""


class PreemptionWatch:
  """Notices SIGTERM; on a pod, agrees with the other processes on the step to stop at."""

  def __init__(self):
    self._received = False
    self._previous = None

  def __enter__(self):
    if jax.process_count() == 1:
      try:
        self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)
      except ValueError:          # not the main thread: leave signals alone
        self._previous = None
    return self

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)

  def _on_sigterm(self, signum, frame):
    del signum, frame
    logging.warning("SIGTERM received: saving at the end of this step, then exiting.")
    self._received = True

  def reached(self, step):
    if jax.process_count() > 1:   # JAX's coordination service tracks the pod's preemption notice
      return multihost_utils.reached_preemption_sync_point(step)
    return self._received
