"""What jobs leave on disk: parameter directories marked complete by their JSON, and results.json.

A parameter directory (a teacher, a pretrained trunk, a retrieval teacher) is
`params/` (an orbax checkpoint) plus a JSON file written after it: the JSON's
presence means the parameters are complete. Restoring checks every shape first
and places the parameters replicated on the mesh, whatever topology saved them.
"""

import json
import logging

import jax
import orbax.checkpoint as ocp
from etils import epath
from jax.experimental import multihost_utils

from tgt_jax import checkpointing, metrics, sharding

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


def save_params_then_json(directory, params, json_name, meta):
  """params/ (orbax, every process) and then `json_name` (process 0): the JSON marks it complete.

  With several processes, all wait until process 0 has written the JSON, because
  the others may load it next.
  """
  directory = checkpointing.absolute(directory)
  directory.mkdir(parents=True, exist_ok=True)
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(directory / PARAMS_DIR, params, force=True)
  if jax.process_index() == 0:
    (directory / json_name).write_text(json.dumps(meta, indent=2, sort_keys=True))
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(f"save {directory / json_name}")


def restore_replicated(path, init_fn, mesh, on_mismatch):
  """Parameters at `path` restored replicated on `mesh` (default: all devices), whatever
  topology saved them; a checkpoint whose shapes differ from `init_fn`'s calls
  on_mismatch(name, expected, found), which raises; one that does not read (truncated,
  missing files) raises DamagedArtifact naming `path`."""
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
