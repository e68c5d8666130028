"""One data-parallel mesh for 1 device, 8 fake CPU devices and a multi-host pod.

The batch is sharded over the `data` axis; parameters and optimizer state are
replicated. Each process holds only its own rows of the global batch and turns
them into one global `jax.Array` with `make_array_from_process_local_data`.
"""

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def make_mesh(devices=None):
  """A 1-D `data` mesh over `devices` (default: every device of every process)."""
  devices = list(jax.devices() if devices is None else devices)
  return jax.make_mesh((len(devices),), (DATA_AXIS,), devices=devices)


def replicated(mesh):
  return NamedSharding(mesh, P())


def batch_sharded(mesh):
  return NamedSharding(mesh, P(DATA_AXIS))


def check_batch_size(batch_size, mesh, name="batch_size"):
  """Global batch sizes must split evenly over devices and processes."""
  devices = mesh.devices.size
  if batch_size <= 0 or batch_size % devices:
    raise ValueError(f"{name}={batch_size} is not divisible by the number of devices "
                     f"({devices}); use a multiple of {devices}.")
  if batch_size % jax.process_count():
    raise ValueError(f"{name}={batch_size} is not divisible by the number of processes "
                     f"({jax.process_count()}).")


def mesh_for(**batch_sizes):
  """The job's mesh, once every named global batch size is checked to split over it."""
  mesh = make_mesh()
  for name, size in batch_sizes.items():
    check_batch_size(size, mesh, name)
  return mesh


def process_rows(global_batch_size):
  """This process's slice of a global batch (contiguous rows, in process order)."""
  per_process = global_batch_size // jax.process_count()
  start = jax.process_index() * per_process
  return slice(start, start + per_process)


def to_global(mesh, local_tree):
  """Host-local numpy batch (this process's rows) → global arrays sharded on `data`."""
  sharding = batch_sharded(mesh)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_tree)


def replicate(mesh, tree):
  """Put a (host-identical) pytree on every device of the mesh."""
  return jax.device_put(tree, replicated(mesh))


def gathered(x):
  """x on every device of its mesh (a batch-sharded array → replicated); as is outside one."""
  layout = jax.typeof(x).sharding
  if layout.mesh.empty:
    return x
  return jax.sharding.reshard(x, NamedSharding(layout.mesh, P()))
