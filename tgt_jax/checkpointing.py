"""A thin wrapper around orbax's CheckpointManager for the student's train state.

Only the student is checkpointed (teachers are reloaded from their own
directory). Saves are asynchronous; every process calls save and restore (the
manager coordinates them), so multi-host runs do not hang on a process-0-only
save. A JSON `meta` item travels with each state (step, config summary).
"""

import logging

import jax
import orbax.checkpoint as ocp
from etils import epath


class Checkpointer:

  def __init__(self, directory, max_to_keep=3, async_save=True):
    self.directory = epath.Path(directory)
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
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target_state)
    restored = self._manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                      meta=ocp.args.JsonRestore()))
    logging.info("Restored student checkpoint at step %d from %s", step, self.directory)
    return restored["state"], restored["meta"]

  def wait(self):
    self._manager.wait_until_finished()

  def close(self):
    self._manager.wait_until_finished()
    self._manager.close()
