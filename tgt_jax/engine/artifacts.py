"""Results on disk: results.json (process 0) and its one-line summary in the log."""

import json
import logging

import jax
from etils import epath

from tgt_jax import metrics

RESULTS_FILE = "results.json"


def write_json(workdir, name, payload):
  if jax.process_index() == 0:
    path = epath.Path(workdir) / name
    path.write_text(json.dumps(payload, indent=2, sort_keys=True))
    logging.info("Wrote %s", path)


def write_results(workdir, results):
  """results.json, then one line a person reads at the end of every job."""
  write_json(workdir, RESULTS_FILE, results)
  summary = getattr(metrics, "summary_line", None)
  if summary is not None:
    logging.info("%s", summary(results))
  return results
