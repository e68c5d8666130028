"""Checks that a host sees its TPUs and its peers before a long run is started.

On a pod (launch/preflight.sh runs it on every worker with --distributed) each
process prints one line; all lines should agree on the process count and the
global device count, and every process index should appear once. A cross-host
sum over all devices proves that the collectives work, not only the devices.
Locally, without --distributed, it prints the same line for one process.
"""

import argparse
import socket


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--distributed", action="store_true",
                      help="Call jax.distributed.initialize() first (every worker of a pod).")
  # On Cloud TPU initialize() finds these itself; elsewhere (a CPU test) pass them.
  parser.add_argument("--coordinator_address", help="host:port of process 0 (not on TPU).")
  parser.add_argument("--num_processes", type=int, help="Number of processes (not on TPU).")
  parser.add_argument("--process_id", type=int, help="This process's index (not on TPU).")
  return parser.parse_args(argv)


def all_devices_sum():
  """Sum of one 1.0 per device, over every device of every process: the global device count."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from jax.sharding import NamedSharding, PartitionSpec as P  # pylint: disable=g-import-not-at-top
  mesh = jax.make_mesh((jax.device_count(),), ("data",), devices=jax.devices())
  ones = jax.make_array_from_process_local_data(NamedSharding(mesh, P("data")),
                                                np.ones(jax.local_device_count(), np.float32))
  total = jax.jit(lambda x: x.sum(), out_shardings=NamedSharding(mesh, P()))(ones)
  return int(np.asarray(total))


def main(argv=None):
  args = parse_args(argv)
  import jax  # pylint: disable=g-import-not-at-top
  if args.distributed:
    jax.distributed.initialize(coordinator_address=args.coordinator_address,
                               num_processes=args.num_processes, process_id=args.process_id)
  total = all_devices_sum()
  status = "ok" if total == jax.device_count() else f"WRONG (got {total})"
  print(f"preflight: host {socket.gethostname()} process {jax.process_index()} of "
        f"{jax.process_count()}, {jax.local_device_count()} local / {jax.device_count()} global "
        f"{jax.devices()[0].platform} devices ({jax.devices()[0].device_kind}), "
        f"all-device sum {status}", flush=True)
  if total != jax.device_count():
    raise SystemExit(1)


if __name__ == "__main__":
  main()
