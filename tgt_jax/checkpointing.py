"""A thin wrapper around orbax's CheckpointManager for the student's train state.

Only the student is checkpointed (teachers are reloaded from their own
directory). Saves are asynchronous; every process calls save and restore (the
manager coordinates them), so multi-host runs do not hang on a process-0-only
save. A JSON `meta` item travels with each state (step, method).

Resuming takes the newest checkpoint that restores. One that does not READ (a
truncated file, a missing directory) is reported and moved to
`<dir>.quarantine/`: never deleted, and out of the way of later saves and of
`max_to_keep`, which would otherwise count it as a good one. One that reads but
holds another model's tree (another config) is never moved: that is an error
naming the step and the first difference. eval_only moves nothing at all.
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


class DamagedArtifact(ValueError):
  """A checkpoint or file that is there but does not read (truncated, parts missing)."""


class WriteFailed(OSError):
  """A checkpoint or artifact that could not be written (a full disk, a lost permission)."""


class CheckpointMismatch(ValueError):
  """A checkpoint that reads but holds another model's tree: another run, never corruption."""


def first_line(e):
  """`Type: first line of the message` (at most 300 characters): libraries' errors can be
  screenfuls (TensorStore's run to 150 lines)."""
  lines = str(e).strip().splitlines()
  line = (lines[0] if lines else "").split(" [tensorstore_spec=")[0]
  return f"{type(e).__name__}: {line[:300]}"


def reading(path, fn):
  """fn(), with any failure to read turned into DamagedArtifact naming `path`."""
  try:
    return fn()
  except (DamagedArtifact, CheckpointMismatch):
    raise
  except Exception as e:  # pylint: disable=broad-except  (corruption takes many forms)
    raise DamagedArtifact(f"{os.fspath(path)} does not read ({first_line(e)}).") from None


def stored_tree(path):
  """The tree metadata (names, shapes) of the orbax item at `path`, read without a target.

  Raises where it does not read or holds no array (orbax's Checkpointer.metadata
  logs and returns None instead).
  """
  tree = ocp.StandardCheckpointHandler().metadata(path)
  if not jax.tree_util.tree_leaves(tree):
    raise ValueError(f"no arrays in the tree metadata of {os.fspath(path)}")
  return tree


def _key_name(key):
  for attr in ("key", "name", "idx"):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def leaf_shapes(tree):
  """{'a/b/0/c': shape} of every array leaf: the same names for a pytree (dataclasses,
  NamedTuples, tuples) and for the nested dicts and lists orbax stores it as."""
  return {"/".join(_key_name(k) for k in path): tuple(getattr(leaf, "shape", ()))
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def tree_differences(expected, found):
  """Lines naming each leaf whose shape differs, or that only one side has."""
  out = []   # the model's own parameters first, its optimizer's copies of them after
  for name in sorted(expected.keys() | found.keys(), key=lambda n: (n.startswith("opt_"), n)):
    if name not in found:
      out.append(f"{name} (shape {expected[name]}) is missing from the checkpoint")
    elif name not in expected:
      out.append(f"{name} (shape {found[name]}) is in the checkpoint but not in this run")
    elif expected[name] != found[name]:
      out.append(f"{name} has shape {found[name]} in the checkpoint, {expected[name]} in "
                 "this run")
  return out


class Checkpointer:
  """Checkpoints of one training in `directory`; `read_only` (eval_only) never writes there."""

  def __init__(self, directory, max_to_keep=3, async_save=True, read_only=False,
               label="student"):
    if isinstance(max_to_keep, bool) or not isinstance(max_to_keep, int) or max_to_keep < 1:
      raise ValueError(f"keep_checkpoints (max_to_keep) must be an integer >= 1, got "
                       f"{max_to_keep!r}: it is how many of the newest checkpoints are kept.")
    self.directory = absolute(directory)
    self.quarantine = self.directory.parent / (self.directory.name + ".quarantine")
    self.read_only = read_only
    self.label = label           # what the checkpoints are of, for log lines
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=not read_only,
                                           read_only=read_only,
                                           enable_async_checkpointing=async_save)
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_names=("state", "meta"))

  def latest_step(self):
    return self._manager.latest_step()

  def all_steps(self):
    return list(self._manager.all_steps())

  def save(self, step, state, meta=None):
    """Starts an async save of `state` at `step`; the caller decides when to save.

    A save that fails (a full disk) is a WriteFailed naming the step being written; an
    async save's failure surfaces at the next save or wait, still naming its own step."""
    args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                              meta=ocp.args.JsonSave(meta or {}))
    pending = getattr(self, "_in_flight", None)
    try:
      saved = self._manager.save(step, args=args, force=True)
    except Exception as e:  # pylint: disable=broad-except  (tensorstore's and the OS's kinds)
      raise self._write_failed(e, pending or step) from None
    self._in_flight = step
    return saved

  def _write_failed(self, error, step):
    intact = [s for s in self.all_steps() if s != step]
    return WriteFailed(
        f"Saving the {self.label} checkpoint at step {step} to {self.directory} failed "
        f"({first_line(error)}); the newest other checkpoint is step "
        f"{max(intact) if intact else None}. Free space (or fix the directory), then run the "
        "same command to resume.")

  def check_tree(self, target_state, step):
    """Raises CheckpointMismatch if the checkpoint at `step` holds another tree than
    `target_state` (names or shapes), DamagedArtifact if its tree metadata does not read.

    The stored metadata is read without the target, so a checkpoint of another model is
    told apart from a damaged one before restoring anything.
    """
    path = self.directory / str(step) / "state"
    try:
      found = stored_tree(path)
    except Exception as e:  # pylint: disable=broad-except  (corruption takes many forms)
      raise DamagedArtifact(f"The checkpoint at step {step} in {self.directory} does not read "
                            f"({first_line(e)}).") from None
    differences = tree_differences(leaf_shapes(target_state), leaf_shapes(found))
    if differences:
      shown = "; ".join(differences[:3])
      more = f" (and {len(differences) - 3} more)" if len(differences) > 3 else ""
      raise CheckpointMismatch(
          f"The checkpoint at step {step} in {self.directory} belongs to a different "
          f"model/config: {shown}{more}. It was left as it is. Run with the config that wrote "
          "it, or use another --workdir.")

  def restore(self, target_state, step=None):
    """(state, meta) at `step` (default latest), laid out like `target_state`.

    CheckpointMismatch: a checkpoint of another model; DamagedArtifact: one that does
    not read. Neither moves anything.
    """
    step = self.latest_step() if step is None else step
    if step is None or step not in self.all_steps():
      raise FileNotFoundError(f"No checkpoint at step {step} in {self.directory}; "
                              f"available: {self.all_steps()}.")
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target_state)
    self.check_tree(abstract, step)
    try:
      restored = self._manager.restore(
          step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                        meta=ocp.args.JsonRestore()))
    except Exception as e:  # pylint: disable=broad-except  (corruption takes many forms)
      raise DamagedArtifact(f"The checkpoint at step {step} in {self.directory} does not "
                            f"restore ({first_line(e)}).") from None
    logging.info("Restored %s checkpoint at step %d from %s", self.label, step, self.directory)
    return restored["state"], restored["meta"]

  def restore_latest_intact(self, target_state, may_move=True):
    """(state, meta) of the newest checkpoint that restores, or None if there is none.

    One that does not read is moved to the quarantine (may_move) and the previous one
    tried; with may_move=False (eval_only) nothing is moved and the DamagedArtifact is
    raised. A checkpoint of another model raises CheckpointMismatch and is never moved:
    that is another run's work, not corruption.
    """
    for step in sorted(self.all_steps(), reverse=True):
      try:
        return self.restore(target_state, step)
      except DamagedArtifact as e:
        if not may_move or self.read_only:
          raise DamagedArtifact(f"{e} Nothing was moved; restore it, or name an earlier step "
                                f"(available: {self.all_steps()}).") from None
        logging.warning("%s Moving it to %s and trying the previous one.", e, self.quarantine)
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
    try:
      self._manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except
      raise self._write_failed(e, getattr(self, "_in_flight", None)) from None

  def close(self):
    self.wait()
    self._manager.close()


class Preempted(Exception):
  """Raised after a SIGTERM or a first Ctrl-C: the state was saved, the next start resumes.

  `exit_code` is 128 + the signal (143 SIGTERM, 130 SIGINT), the code to exit with.
  """

  def __init__(self, message, exit_code=128 + signal.SIGTERM):
    super().__init__(message)
    self.exit_code = int(exit_code)


class PreemptionWatch:
  """Notices SIGTERM and Ctrl-C; on a pod, agrees with the other processes on the step to stop at.

  One process: SIGTERM, or a first Ctrl-C, makes `reached` true at the end of the
  current step (the loop saves, then raises Preempted with `exit_code`); the first
  Ctrl-C puts the previous SIGINT handler back, so a second one exits at once
  (KeyboardInterrupt). On a pod, `reached` follows JAX's preemption sync point (the
  step every process agrees on after the cluster's SIGTERM); a Ctrl-C there only sets
  this process's flag (the others cannot learn of it without a collective every
  step), so a pod stops on Ctrl-C only the second time, without saving.
  """

  def __init__(self):
    self._received = False
    self.signum = None
    self._previous = {}

  def __enter__(self):
    signums = (signal.SIGINT,) if jax.process_count() > 1 else (signal.SIGTERM, signal.SIGINT)
    for signum in signums:
      try:
        self._previous[signum] = signal.signal(signum, self._on_signal)
      except ValueError:          # not the main thread: leave signals alone
        pass
    return self

  def __exit__(self, *exc):
    for signum, previous in self._previous.items():
      signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
    self._previous = {}

  @property
  def exit_code(self):
    """128 + the first signal received (143 when none, or on a pod's agreed preemption)."""
    return 128 + (self.signum if self.signum is not None else signal.SIGTERM)

  def _on_signal(self, signum, frame):
    del frame
    if signum == signal.SIGINT:
      previous = self._previous.pop(signal.SIGINT, None)
      signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)
      if jax.process_count() > 1:
        logging.warning("Ctrl-C: a multi-process run stops at a step all processes agree on, "
                        "which a Ctrl-C cannot set; press Ctrl-C again to exit at once "
                        "(the last periodic checkpoint is kept).")
      else:
        logging.warning("Ctrl-C: saving at the end of this step; press Ctrl-C again to exit at "
                        "once.")
    else:
      logging.warning("SIGTERM received: saving at the end of this step, then exiting.")
    if self.signum is None:
      self.signum = signum
    self._received = True

  def reached(self, step):
    if jax.process_count() > 1:   # JAX's coordination service tracks the pod's preemption notice
      return multihost_utils.reached_preemption_sync_point(step)
    return self._received

  def preempted(self, step, directory, label=""):
    """The Preempted error to raise once `step` is saved to `directory`."""
    return Preempted(f"Preempted: saved {label}step {step} to {directory}; run the same command "
                     "to resume from it.", self.exit_code)
