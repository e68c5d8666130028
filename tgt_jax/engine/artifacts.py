"""What jobs leave on disk for other jobs: artifacts, and results.json.

An *artifact* is a directory one job writes and others read: a teacher (or one of
its parts), a pretrained trunk, a retrieval teacher, a synthesis cache. The rule for
all of them:
- one writer at a time: `writing(directory)` creates it (or names why it cannot) and
  holds its LOCK (workdir.WorkdirLock) while the writer works; a second writer waits;
- an identity written by its maker (the settings that give it meaning, the data it
  saw) and checked by every later writer and reader: `check_identity` names each
  setting that differs, with both values, before any work;
- content checksums (sha256 of every file) recorded when written and verified on
  load: `verify_checksums` names the first file that changed.
Readers never write: they get a named error where a writer would have trained.

A parameter artifact is `params/` (an orbax checkpoint) plus a JSON written after
it, holding its checksums: the JSON's presence means the parameters are complete.
Restoring checks every shape first and places the parameters replicated on the
mesh, whatever topology saved them.
"""

import contextlib
import hashlib
import json
import logging
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from jax.experimental import multihost_utils

from tgt_jax import checkpointing, metrics, sharding, workdir as workdir_lib

CHECKSUMS = "checksums"         # the JSON key of {relative path: sha256}
LOCK_WAIT_S = 6 * 3600.0        # how long a second writer waits for the first one
_CHUNK = 1 << 22


def sha256_of(path):
  """The sha256 of a file, read in 4 MiB pieces (published weights are gigabytes)."""
  digest = hashlib.sha256()
  with epath.Path(path).open("rb") as f:
    for piece in iter(lambda: f.read(_CHUNK), b""):
      digest.update(piece)
  return digest.hexdigest()


def params_fingerprint(tree):
  """A short hash of a parameter tree (names, shapes, dtypes, values): which parameters a run
  used. Reads each process's own replica, so it works on a pod."""
  digest = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    value = np.asarray(leaf.addressable_data(0) if hasattr(leaf, "addressable_data") else leaf)
    digest.update(f"{jax.tree_util.keystr(path)}{value.dtype}{value.shape}".encode())
    digest.update(value.tobytes())
  return digest.hexdigest()[:16]


def checksums_fingerprint(meta):
  """A short hash of an artifact's recorded file checksums: which files a run read."""
  text = json.dumps((meta or {}).get(CHECKSUMS, {}), sort_keys=True)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_checksums(directory, *names):
  """{path relative to `directory`: sha256} of each named file, and of every file below each
  named directory."""
  directory, out = epath.Path(directory), {}
  for name in names:
    path = directory / name
    files = sorted(_files_below(path)) if path.is_dir() else [path]
    for file in files:
      out[os.path.relpath(os.fspath(file), os.fspath(directory))] = sha256_of(file)
  return out


def _files_below(directory):
  """Every file below `directory` (epath has no recursive glob, for GCS's sake)."""
  for path in directory.iterdir():
    if path.is_dir():
      yield from _files_below(path)
    else:
      yield path


def verify_checksums(directory, recorded, what):
  """DamagedArtifact naming the first file below `directory` that is missing or whose bytes
  changed since its maker recorded them (bit rot, a partial copy, an edit)."""
  directory = epath.Path(directory)
  for name, digest in sorted((recorded or {}).items()):
    path = directory / name
    if not path.exists():
      raise checkpointing.DamagedArtifact(
          f"{os.fspath(path)} is missing: the {what} at {os.fspath(directory)} is incomplete; "
          "restore the file, or make the artifact again in another directory.")
    if sha256_of(path) != digest:
      raise checkpointing.DamagedArtifact(
          f"{os.fspath(path)} changed since it was written (its sha256 differs from the one "
          f"recorded): the {what} at {os.fspath(directory)} is damaged; restore the file, or "
          "make the artifact again in another directory.")


@contextlib.contextmanager
def writing(directory, what, wait_s=LOCK_WAIT_S, config_key=None):
  """Held by the one writer of an artifact: creates `directory` (a named error if it cannot be
  written, e.g. read-only) and holds its LOCK; a second writer waits up to `wait_s` (a live
  holder on this host), then refuses. `config_key` (e.g. "teacher.dir") names the setting."""
  where = config_key or what
  workdir_lib.prepare(directory, where, f"point {where} at a writable directory, or at a "
                      f"complete {what} that needs no writing")
  with workdir_lib.WorkdirLock(directory, wait_s=wait_s, what=f"{what} directory"):
    yield epath.Path(directory)


IDENTITY_FILE = "identity.json"


def record_identity(directory, identity, what, fix, file=IDENTITY_FILE):
  """The maker's identity: written at the first start (process 0), checked against at every
  later one by check_identity. Returns True when it was written now."""
  path = epath.Path(directory) / file
  if path.exists():
    try:
      recorded = json.loads(path.read_text())["identity"]
    except (ValueError, KeyError, TypeError) as e:
      raise checkpointing.DamagedArtifact(
          f"{os.fspath(path)} does not read ({checkpointing.first_line(e)}): the {what}'s "
          f"identity is damaged; restore it, or use another directory.") from None
    check_identity(recorded, identity, what, directory, fix)
    return False
  if jax.process_index() == 0:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"what": what, "identity": workdir_lib.as_json(identity)},
                               indent=2, sort_keys=True))
  return True


class ArtifactMismatch(ValueError):
  """An artifact made with other settings than the ones this run asks for."""


def check_identity(recorded, wanted, what, directory, fix):
  """ArtifactMismatch listing each setting that differs, with both values. An artifact is
  never made again under other settings: `fix` says what the user can do instead."""
  recorded = workdir_lib.as_json(recorded)
  wanted = workdir_lib.as_json(wanted)
  lines = [f"{key}: {what} {recorded.get(key, '(absent)')!r}, this run "
           f"{wanted.get(key, '(absent)')!r}"
           for key in sorted(recorded.keys() | wanted.keys())
           if recorded.get(key, "(absent)") != wanted.get(key, "(absent)")]
  if lines:
    raise ArtifactMismatch(f"The {what} at {os.fspath(directory)!r} was made with other "
                           f"settings ({'; '.join(lines)}): {fix}.")

RESULTS_FILE = "results.json"
PARAMS_DIR = "params"


def write_json(workdir, name, payload):
  if jax.process_index() == 0:
    path = epath.Path(workdir) / name
    path.write_text(json.dumps(payload, indent=2, sort_keys=True))
    logging.info("Wrote %s", path)


def write_results(workdir, results):
  """results.json, then one line a person reads at the end of every job."""
  write_json(workdir, RESULTS_FILE, results)
  logging.info("%s", metrics.summary_line(results))
  return results


def save_params_then_json(directory, params, json_name, meta, extra_files=()):
  """params/ (orbax, every process) and then `json_name` (process 0): the JSON marks it complete
  and records the sha256 of every file of params/ and of `extra_files` (written before).

  With several processes, all wait until process 0 has written the JSON, because
  the others may load it next.
  """
  directory = checkpointing.absolute(directory)
  directory.mkdir(parents=True, exist_ok=True)
  try:
    with ocp.StandardCheckpointer() as ckptr:
      ckptr.save(directory / PARAMS_DIR, params, force=True)
    if jax.process_index() == 0:
      meta = {**meta, CHECKSUMS: file_checksums(directory, PARAMS_DIR, *extra_files)}
      (directory / json_name).write_text(json.dumps(meta, indent=2, sort_keys=True))
  except Exception as e:  # pylint: disable=broad-except  (a full disk surfaces in many types)
    raise checkpointing.WriteFailed(
        f"Writing {os.fspath(directory)} failed ({checkpointing.first_line(e)}): it is left "
        f"incomplete (no {json_name}); free space or fix the directory, then rerun.") from None
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(f"save {directory / json_name}")


def restore_replicated(path, init_fn, mesh, on_mismatch, checksums=None, what="artifact"):
  """Parameters at `path` restored replicated on `mesh` (default: all devices), whatever
  topology saved them; a checkpoint whose shapes differ from `init_fn`'s calls
  on_mismatch(name, expected, found), which raises; one that does not read (truncated,
  missing files) raises DamagedArtifact naming `path`. `checksums` (the JSON's, paths
  relative to path's parent) are verified first: a changed file is named."""
  if checksums is not None:
    verify_checksums(epath.Path(path).parent, checksums, what)
  target = sharding.replicated(mesh if mesh is not None else sharding.make_mesh())
  abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=target),
                          jax.eval_shape(init_fn))
  found = checkpointing.reading(path, lambda: checkpointing.stored_tree(path))
  check_same_shapes(abstract, found, on_mismatch)
  with ocp.StandardCheckpointer() as ckptr:
    return checkpointing.reading(path, lambda: ckptr.restore(path, abstract))


def _shapes(tree):
  return {jax.tree_util.keystr(k): tuple(v.shape)
          for k, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def check_same_shapes(expected_tree, found_tree, on_mismatch):
  """Calls on_mismatch(name, expected shape, found shape) for the first parameter that
  differs, either way ('absent' where one side lacks it)."""
  expected, found = _shapes(expected_tree), _shapes(found_tree)
  for name in sorted(expected.keys() | found.keys()):
    if expected.get(name) != found.get(name):
      on_mismatch(name, expected.get(name, "absent"), found.get(name, "absent"))
