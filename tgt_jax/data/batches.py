"""Batches as a pure function of (seed, step): resuming at step s sees the same data.

The stream walks through a fresh permutation of the examples each epoch, so
every example is seen once per epoch even when the set is smaller than a batch
(a 50-image student set with batch 64 just spans two epochs in one batch).
"""

import numpy as np


def batch_rows(num_examples, batch_size, seed, step):
  """Rows (into the dataset) of global batch number `step`."""
  if num_examples <= 0:
    raise ValueError("Cannot draw batches from an empty dataset.")
  positions = step * batch_size + np.arange(batch_size)
  epochs, offsets = np.divmod(positions, num_examples)
  rows = np.empty(batch_size, np.int64)
  for epoch in np.unique(epochs):
    perm = np.random.default_rng([seed, int(epoch)]).permutation(num_examples)
    mask = epochs == epoch
    rows[mask] = perm[offsets[mask]]
  return rows


def eval_batches(num_examples, batch_size):
  """(rows, valid mask) covering all examples once, the last batch padded to full size."""
  for start in range(0, num_examples, batch_size):
    rows = np.arange(start, start + batch_size)
    valid = rows < num_examples
    yield np.where(valid, rows, 0), valid
