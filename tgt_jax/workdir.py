"""A workdir belongs to one run: create it, record what run it is, and lock it while it runs.

- `prepare(workdir)` creates it (local or gs://) or says, naming the path, why not.
- `identity(config)` is what makes a run that run: the flattened config minus the
  few `RESUMABLE_KEYS` a resume may change. `record_or_check` writes it on the
  first start and, on every later start, refuses before any work a workdir that
  holds another run (another method, seed, student, ...), listing each difference.
- `WorkdirLock(workdir)` keeps a second run out of a workdir while one runs.
"""

import contextlib
import json
import logging
import math
import os
import signal
import socket
import sys
import time
import uuid

import jax
import numpy as np
from etils import epath

IDENTITY_FILE = "run_identity.json"
TEACHER_IDENTITY_FILE = "teacher_identity.json"   # the parameters a student run distils from
LOCK_FILE = "LOCK"

# Keys a resumed run may change: how long it runs, how often it logs, evaluates and
# saves, how many checkpoints it keeps, what an eval_only run reads and shows, whether
# a missing teacher may be trained, and where the SAME data lives. num_train_steps /
# num_epochs extend or shorten a run (the learning-rate schedule follows the new total
# from the resume point on: the user's choice). Everything else changes the run.
RESUMABLE_KEYS = (
    "num_train_steps", "num_epochs", "log_every", "eval_every", "checkpoint_every",
    "keep_checkpoints", "eval_batch_size", "eval_only", "eval_step", "grid_examples",
    "teacher.train_if_missing", "retrieval_teacher.train_if_missing",
    "retrieval_teacher.log_every", "retrieval_teacher.eval_every",
    "retrieval_teacher.eval_queries", "data.data_dir", "data.dir",
)


class WorkdirError(ValueError):
  """--workdir cannot be used: a regular file, or a path that cannot be created."""


class IdentityMismatch(ValueError):
  """The workdir holds another run: resuming it with this config would mix two runs."""


class WorkdirInUse(RuntimeError):
  """Another live run holds the workdir's lock."""


def _local(path):
  return "://" not in os.fspath(path)


def prepare(workdir, what="--workdir", fix=""):
  """epath.Path of `workdir`, created if needed; WorkdirError naming the path and the reason.

  `what` names the directory in messages (e.g. "teacher.dir"); `fix` says what to do."""
  path = epath.Path(workdir)
  fix = fix or ("pass a directory (it is created if missing)" if what == "--workdir"
                else f"point {what} at a writable directory")
  try:
    if path.exists() and not path.is_dir():
      raise WorkdirError(f"{what} {os.fspath(workdir)!r} is a regular file, not a "
                         f"directory: {fix}.")
    path.mkdir(parents=True, exist_ok=True)
  except WorkdirError:
    raise
  except Exception as e:  # pylint: disable=broad-except  (OSError locally, API errors on gs://)
    raise WorkdirError(f"{what} {os.fspath(workdir)!r} cannot be created: "
                       f"{type(e).__name__}: {_first_line(e)}; {fix}.") from None
  if _local(path) and not os.access(path, os.W_OK | os.X_OK):
    raise WorkdirError(f"{what} {os.fspath(workdir)!r} is not writable by this user: {fix}.")
  return path


def _first_line(e):
  lines = str(e).strip().splitlines()
  return (lines[0] if lines else "")[:300]


# -- run identity ---------------------------------------------------------------------------


def _jsonable(value):
  """A JSON value that compares equal after a round trip (tuples → lists, inf → 'inf')."""
  if isinstance(value, dict) or hasattr(value, "items"):
    return {str(k): _jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_jsonable(v) for v in value]
  if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
    return value
  if isinstance(value, float):
    return value if math.isfinite(value) else repr(value)
  if hasattr(value, "item") and getattr(value, "shape", None) == ():   # numpy scalars
    return _jsonable(value.item())
  return repr(value)


def as_json(value):
  """`value` as JSON values that compare equal after a round trip (for identities)."""
  return _jsonable(value)


def _flatten(tree, prefix=""):
  out = {}
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if hasattr(value, "items") and value:   # a (Config)Dict: one key per leaf
      out.update(_flatten(value, name + "."))
    else:
      out[name] = _jsonable(value)
  return out


def identity(config):
  """{dotted key: JSON value} of `config` (a ConfigDict or a dict), minus RESUMABLE_KEYS."""
  tree = config.to_dict() if hasattr(config, "to_dict") else dict(config)
  return {k: v for k, v in _flatten(tree).items() if k not in RESUMABLE_KEYS}


def record_or_check(directory, ident, what, *, write=True, file=IDENTITY_FILE):
  """Records `ident` in directory/run_identity.json, or checks it against the recorded one.

  Absent: written (process 0, atomically) unless write=False (e.g. eval_only, which
  must not change the workdir). Present and different: IdentityMismatch listing each
  differing key with its recorded and its new value. `what` names the run in messages
  ("student run", ...). Callers add context to `ident` (e.g. the teacher's directory
  and fingerprint) as more keys.
  """
  path = epath.Path(directory) / file
  new = _jsonable(ident)
  if not path.exists():
    if write and jax.process_index() == 0:
      tmp = path.parent / f".{file}.{uuid.uuid4().hex}.tmp"
      tmp.write_text(json.dumps({"what": what, "identity": new}, indent=2, sort_keys=True))
      tmp.rename(path)
    return
  try:
    recorded = json.loads(path.read_text())["identity"]
    if not isinstance(recorded, dict):
      raise TypeError(f"'identity' is a {type(recorded).__name__}, not an object")
  except (ValueError, KeyError, TypeError) as e:
    raise IdentityMismatch(
        f"{os.fspath(path)} is damaged ({type(e).__name__}: {_first_line(e)}), so this {what} "
        "cannot be checked against the run that wrote the workdir: use another --workdir (or "
        "restore the file).") from None
  if recorded == new:
    return
  lines = [f"  {key}: recorded {_show(recorded, key)}, now {_show(new, key)}"
           for key in sorted(recorded.keys() | new.keys())
           if key not in recorded or key not in new or recorded[key] != new[key]]
  raise IdentityMismatch(
      f"--workdir {os.fspath(directory)!r} holds another {what} ({len(lines)} setting(s) "
      f"differ from the ones recorded in {file}):\n" + "\n".join(lines) +
      f"\nUse another --workdir for this {what}, or restore the original values to resume it.")


class IdentityRecords:
  """The identity files a start finds in `directories`, so that those it writes can be taken
  back if the start fails before writing any checkpoint (process 0; local or gs://)."""

  def __init__(self, *directories):
    self.directories = [epath.Path(d) for d in dict.fromkeys(map(os.fspath, directories))]
    self.paths = [d / f for d in self.directories for f in (IDENTITY_FILE, TEACHER_IDENTITY_FILE)]
    self.existed = {p for p in self.paths if p.exists()}
    self.checkpoints = _checkpoint_steps(self.directories)

  def forget_new_if_no_checkpoint(self):
    if jax.process_index() != 0 or _checkpoint_steps(self.directories) != self.checkpoints:
      return
    for path in self.paths:
      if path not in self.existed and path.exists():
        path.unlink()
        logging.info("Removed %s: this start failed before writing any checkpoint.",
                     os.fspath(path))


def _checkpoint_steps(directories):
  """Every orbax step directory (…/checkpoints/<step>) up to three levels below each of
  `directories` (a run's own, its teacher's parts'), without a recursive glob (slow on GCS)."""
  found = set()
  for directory in directories:
    for depth in range(4):
      pattern = "/".join(["*"] * depth + ["checkpoints", "*"])
      try:
        found.update(os.fspath(p) for p in directory.glob(pattern) if p.name.isdigit())
      except OSError:
        pass
  return found


def _show(values, key):
  return repr(values[key]) if key in values else "(absent)"


# -- the lock -------------------------------------------------------------------------------


def _proc_stat(pid):
  """(state letter, start time in clock ticks since boot) of `pid` from /proc, or (None, None).

  The start time tells a reused PID apart; state 'Z' is a dead, unreaped process.
  """
  try:
    with open(f"/proc/{pid}/stat") as f:
      fields = f.read().rsplit(")", 1)[1].split()
    return fields[0], int(fields[19])
  except (OSError, ValueError, IndexError):
    return None, None


def _alive(pid, proc_start):
  """Is the process that wrote a lock (on this host) still running?"""
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:      # another user's live process
    return True
  state, start = _proc_stat(pid)
  if state == "Z":
    return False
  return proc_start is None or start is None or start == proc_start


_HELD_TOKENS = set()           # the locks this process holds (its own PID is no sign of staleness)


class WorkdirLock(contextlib.AbstractContextManager):
  """Held while a job runs in `workdir` (by process 0; on a pod all processes learn whether
  it got the lock, so all raise WorkdirInUse together).

  The lock is `workdir/LOCK`, JSON {pid, host, start time, argv}. Locally it is
  created with O_CREAT|O_EXCL, so of two starts exactly one gets it; the other
  raises WorkdirInUse at once. A lock left by a dead process of this host (same
  host, PID gone or reused) is taken over with a warning. A lock of another host
  cannot be probed: refused, naming the host and the file to remove if that run is
  gone. On gs:// (no exclusive create) it is best effort: write if absent, wait a
  moment, read back and compare a random token; two starts within that moment can
  both win. The file is removed on exit, also on an exception or SystemExit; while
  held by a single-process run, a SIGTERM with no handler of its own raises
  SystemExit(143) so that it too unwinds and releases the lock (a SIGKILL leaves a
  stale lock, taken over later).
  """

  READ_BACK_DELAY_S = 1.0
  EMPTY_LOCK_GRACE_S = 10.0    # an empty lock older than this was left by a failed start
  POLL_S = 1.0                 # how often a waiting start looks at the lock again

  def __init__(self, workdir, exclusive_create=None, wait_s=0.0, what=None):
    """wait_s: how long to wait for a live holder before refusing (0: refuse at once);
    what: the directory's name in messages ("workdir", "teacher directory", ...)."""
    self.workdir = epath.Path(workdir)
    self.path = self.workdir / LOCK_FILE
    self._exclusive = _local(workdir) if exclusive_create is None else exclusive_create
    self._token = None
    self._previous_sigterm = None
    self.wait_s = float(wait_s)
    self.what = what or "workdir"

  def __enter__(self):
    error = None
    if jax.process_index() == 0:
      try:
        self._acquire()
      except WorkdirInUse as e:
        error = e
    if jax.process_count() > 1:    # all stop together, or the others wait at a collective
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      refused = int(multihost_utils.broadcast_one_to_all(np.int32(error is not None)))
      if refused and error is None:
        raise WorkdirInUse(f"workdir {os.fspath(self.workdir)} is in use: process 0 could not "
                           "take its lock (its log says by whom); use another --workdir.")
    if error is not None:
      raise error
    return self

  def _acquire(self):
    record = {"pid": os.getpid(), "host": socket.gethostname(),
              "start_time": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "start_unix": time.time(),
              "argv": list(sys.argv), "proc_start": _proc_stat(os.getpid())[1],
              "token": uuid.uuid4().hex}
    deadline, waited, takeovers = time.time() + self.wait_s, False, 0
    while takeovers < 3:         # at most a couple of stale takeovers race with us
      if self._try_create(record):
        self._token = record["token"]
        _HELD_TOKENS.add(self._token)
        if jax.process_count() == 1:   # on a pod, JAX's own SIGTERM notice must stay in place
          self._install_sigterm()
        return
      holder = self._read_holder()
      if not self._is_stale(holder):
        if time.time() >= deadline or holder.get("token") in _HELD_TOKENS:   # ours: no waiting
          raise WorkdirInUse(self._in_use_message(holder))
        if not waited:
          logging.warning("Waiting (up to %.0f s) for %s to be released: %s", self.wait_s,
                          os.fspath(self.path), self._in_use_message(holder))
          waited = True
        time.sleep(self.POLL_S)
        continue
      takeovers += 1
      if holder.get("empty"):
        logging.warning("Taking over the empty lock %s: a start that could not write it (e.g. "
                        "on a full disk) left it behind.", os.fspath(self.path))
      elif not holder.get("gone"):
        logging.warning("Taking over the stale lock %s of PID %s on host %s (started %s): that "
                        "process is gone.", os.fspath(self.path), holder.get("pid"),
                        holder.get("host"), holder.get("start_time"))
      self._remove_if(holder.get("token"), empty=holder.get("empty", False))
    raise WorkdirInUse(f"Could not take the lock {os.fspath(self.path)}: other starts keep "
                       f"taking it; use another {self.what}.")

  def __exit__(self, *exc):
    if self._token is not None:
      self._restore_sigterm()
      self._remove_if(self._token)
      _HELD_TOKENS.discard(self._token)
      self._token = None
    return False

  def _try_create(self, record):
    text = json.dumps(record, indent=2)
    if self._exclusive:
      try:
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
      except FileExistsError:
        return False
      try:
        with os.fdopen(fd, "w") as f:
          f.write(text)
      except OSError as e:       # e.g. a full disk: leave no empty lock behind
        self.path.unlink(missing_ok=True)
        raise WorkdirError(f"Cannot write the lock {os.fspath(self.path)} ({_first_line(e)}): "
                           f"free space in (or fix) the {self.what}, then rerun.") from None
      return True
    if self.path.exists():
      return False
    self.path.write_text(text)
    time.sleep(self.READ_BACK_DELAY_S)
    try:
      return json.loads(self.path.read_text()).get("token") == record["token"]
    except (OSError, ValueError):
      return False

  def _read_holder(self):
    """The lock's JSON; {} if it stays unreadable (a writer may be between create and write)."""
    for _ in range(10):
      try:
        text = self.path.read_text()
        if not text and _local(self.path) and (
            time.time() - os.path.getmtime(self.path) > self.EMPTY_LOCK_GRACE_S):
          return {"empty": True}
        holder = json.loads(text)
        if isinstance(holder, dict):
          return holder
      except FileNotFoundError:
        return {"gone": True}
      except (OSError, ValueError):
        pass
      time.sleep(0.1)
    return {}

  def _is_stale(self, holder):
    if holder.get("gone") or holder.get("empty"):
      return True
    if not holder or holder.get("host") != socket.gethostname():
      return False
    pid = holder.get("pid")
    if not isinstance(pid, int):
      return False
    if pid == os.getpid():       # a previous incarnation with our PID (e.g. a restarted container)
      return holder.get("token") not in _HELD_TOKENS
    return not _alive(pid, holder.get("proc_start"))

  def _in_use_message(self, holder):
    where, what = os.fspath(self.workdir), self.what
    other = "another --workdir" if what == "workdir" else f"another {what}"
    if not holder:
      return (f"{what} {where} is locked by {os.fspath(self.path)}, which cannot be read; "
              f"wait for the run that holds it, or use {other}; if no run uses this "
              f"{what}, remove {os.fspath(self.path)}.")
    who = (f"PID {holder.get('pid')} on host {holder.get('host')} since "
           f"{holder.get('start_time')} ({' '.join(map(str, holder.get('argv') or []))})")
    if holder.get("host") != socket.gethostname():
      return (f"{what} {where} in use by {who}; this host ({socket.gethostname()}) cannot tell "
              f"whether that run is alive: wait for it, or use {other}; if that run is "
              f"gone, remove {os.fspath(self.path)}.")
    return f"{what} {where} in use by {who}; wait for it, or use {other}."

  def _remove_if(self, token, empty=False):
    """Removes the lock file if it still carries `token` (never another run's fresh lock), or,
    with `empty`, if it is still empty."""
    try:
      text = self.path.read_text()
      current = None if empty and not text else json.loads(text).get("token")
    except FileNotFoundError:
      return
    except (OSError, ValueError):
      current = None
    if current == token:
      try:
        self.path.unlink()
      except FileNotFoundError:
        pass

  def _install_sigterm(self):
    try:
      if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        self._previous_sigterm = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    except ValueError:           # not the main thread: leave signals alone
      self._previous_sigterm = None

  def _restore_sigterm(self):
    if self._previous_sigterm is not None:
      try:
        signal.signal(signal.SIGTERM, self._previous_sigterm)
      except ValueError:
        pass
      self._previous_sigterm = None


def _exit_on_sigterm(signum, frame):
  del frame
  raise SystemExit(128 + signum)
