"""Fixed, stratified train / validation / test splits of a dataset that ships as one pool.

The digits and WordNet datasets come without a split of their own; each cuts its
pool here, per class, with a seed fixed in its module, so every run, method and
seed is evaluated on the same examples.
"""

import numpy as np


def stratified_split_rows(labels, fractions, seed):
  """Sorted rows of each part: per class, in proportion to `fractions` (sum ≤ 1; the last
  part takes the rest)."""
  rng = np.random.default_rng(seed)
  parts = [[] for _ in range(len(fractions) + 1)]
  for c in np.unique(labels):
    rows = rng.permutation(np.flatnonzero(labels == c))
    cuts = np.cumsum([int(round(f * len(rows))) for f in fractions])
    for part, chunk in zip(parts, np.split(rows, cuts)):
      part.append(chunk)
  return [np.sort(np.concatenate(p)) for p in parts]
