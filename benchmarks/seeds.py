"""Summaries over seeds, shared by every benchmark's report."""

import numpy as np


def group_by(rows, *keys):
  """{(row[k] for k in keys): [rows]}, in first-seen order."""
  groups = {}
  for row in rows:
    groups.setdefault(tuple(row[k] for k in keys), []).append(row)
  return groups


def mean_std(values):
  """(mean, sample std); the std of a single seed is 0, not NaN."""
  values = np.asarray(values, np.float64)
  return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0
