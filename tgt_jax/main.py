"""Entry point: python -m tgt_jax.main --config=configs/digits.py --workdir=DIR.

Flags only: everything else is jobs.run(config, workdir).
"""

import logging as py_logging

from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file (path[:arg]).", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and results.json.")
flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() (multi-host pods).")
flags.DEFINE_string("coordinator_address", None,
                    "host:port of process 0; with --num_processes and --process_id, starts a "
                    "multi-process run without a cluster to detect (e.g. several processes on "
                    "one machine). Implies --distributed.")
flags.DEFINE_integer("num_processes", None, "Processes in the run (with --coordinator_address).")
flags.DEFINE_integer("process_id", None, "This process's index (with --coordinator_address).")
flags.mark_flags_as_required(["config", "workdir"])

# A preempted run exits with 128 + its signal (143 SIGTERM, 130 Ctrl-C): "stopped by a
# signal", so schedulers retry; checkpointing.Preempted carries the code.


class _QuietLibraries(py_logging.Filter):
  """Keeps orbax's and JAX's per-operation INFO chatter out of the progress log."""

  def filter(self, record):
    noisy = any(f"/{lib}/" in record.pathname for lib in ("orbax", "jax", "etils"))
    return record.levelno >= py_logging.WARNING or not noisy


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.get_absl_handler().addFilter(_QuietLibraries())
  import jax  # pylint: disable=g-import-not-at-top
  if FLAGS.distributed or FLAGS.coordinator_address:
    # Unset values are auto-detected (TPU pods, SLURM, ...). On CPU, JAX's default
    # cross-process collectives (gloo) carry the run.
    jax.distributed.initialize(coordinator_address=FLAGS.coordinator_address,
                               num_processes=FLAGS.num_processes, process_id=FLAGS.process_id)
  from tgt_jax import checkpointing, jobs  # pylint: disable=g-import-not-at-top
  logging.info("JAX: %d process(es), %d device(s): %s", jax.process_count(), jax.device_count(),
               jax.devices()[0].platform)
  try:
    jobs.run(FLAGS.config, FLAGS.workdir)
  except checkpointing.Preempted as e:
    logging.warning("%s", e)
    raise SystemExit(e.exit_code) from None


if __name__ == "__main__":
  app.run(main)
