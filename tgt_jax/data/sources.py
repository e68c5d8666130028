"""Where a job's batches come from: the in-memory digits data or a TFDS pipeline.

Both sources give the train loop the same things, so `train.py` has one code path:
  student_batches(start_step)   this process's rows of each global student batch
  teacher_batches(size, seed)   labelled batches of the whole train split (teacher job)
  evaluate(predict, params, split, batch_size, mesh)   the accuracy report of a split
  sample(split, n)              up to n examples in memory (teacher quality figures)
plus num_classes, image_shape, pixel_range, input_dtype, the vocabulary of a text
dataset (else None) and the student's per-class counts.

Digits batches are a pure function of (seed, step), so a resumed run replays them
exactly; TFDS streams are re-seeded from (seed, start step) (tfds_input.py).
"""

import itertools

import numpy as np
from jax.experimental import multihost_utils

from tgt_jax import evaluation, sharding
from tgt_jax.data import IN_MEMORY, batches, digits, subsets

_TRANSFER_STREAM = 7919       # seed offset of kd_transfer's unlabelled batches


def make_source(config):
  """The source for config.data: digits in memory, any other name through TFDS."""
  if config.data.name in IN_MEMORY:
    return MemorySource(config)
  return TfdsSource(config)


def student_subset(config, train_split, num_classes):
  """The student's labelled rows of an in-memory train split, and their per-class counts."""
  counts = subsets.student_counts(train_split.labels, num_classes, config.data.labels_per_class,
                                  config.data.imbalance, config.data.head_count or None,
                                  config.data.get("num_labels", 0))
  rows = subsets.select_rows(train_split.labels, counts, seed=config.seed)
  return train_split.take(rows), counts


def make_batch(config, method, num_samples, labelled, unlabelled, step):
  """This process's rows of step `step`'s batch: a function of (seed, step) only.

  kd_transfer adds m unlabelled train images per real one, from their own stream.
  """
  rows = batches.batch_rows(len(labelled), config.batch_size, config.seed, step)
  rows = rows[sharding.process_rows(config.batch_size)]
  batch = {"image": labelled.images[rows], "label": labelled.labels[rows]}
  if method == "kd_transfer":
    size = config.batch_size * num_samples
    rows = batches.batch_rows(len(unlabelled), size, config.seed + _TRANSFER_STREAM, step)
    batch["transfer"] = unlabelled.images[rows[sharding.process_rows(size)]]
  return batch


def split_stream(split, batch_size, seed):
  """This process's rows of each labelled global batch of an in-memory split, by (seed, step)."""
  local = sharding.process_rows(batch_size)
  for step in itertools.count():
    rows = batches.batch_rows(len(split), batch_size, seed, step)[local]
    yield {"image": split.images[rows], "label": split.labels[rows]}


class MemorySource:
  """A small real dataset held in memory (digits): exact replay on resume."""

  def __init__(self, config):
    from tgt_jax import data  # pylint: disable=g-import-not-at-top
    self.config = config
    self.dataset = data.load(config.data.name, config.data.to_dict())
    self.num_classes = self.dataset.num_classes
    self.image_shape = tuple(self.dataset.image_shape)
    self.pixel_range = tuple(self.dataset.pixel_range)
    self.input_dtype = self.dataset.input_dtype
    self.vocabulary, self.class_names = self.dataset.vocabulary, self.dataset.class_names
    self.train = self.dataset.splits["train"]
    self.eval_split_names = ("test", "validation")
    self.step_augment = config.data.get("augment", "none")   # applied inside the jitted step
    self.labelled = self.counts = None
    if config.get("job", "student") == "student":
      self.labelled, self.counts = student_subset(config, self.train, self.num_classes)

  def student_batches(self, method, num_samples, start_step):
    for step in itertools.count(start_step):
      yield make_batch(self.config, method, num_samples, self.labelled, self.train, step)

  def teacher_batches(self, batch_size, seed):
    return split_stream(self.train, batch_size, seed)

  def evaluate(self, predict_fn, params, split_name, batch_size, mesh, groups):
    split = self.dataset.splits[split_name]
    preds = evaluation.predict(predict_fn, params, split, batch_size, mesh)
    return evaluation.report(preds, split.labels, self.num_classes, groups)

  def sample(self, split_name, max_examples):
    split = self.dataset.splits[split_name]
    return split.take(np.arange(min(len(split), max_examples)))


class TfdsSource:
  """A TFDS image-classification dataset read per process with tf.data."""

  def __init__(self, config):
    from tgt_jax.data import tfds_input  # pylint: disable=g-import-not-at-top
    self.tfds_input = tfds_input
    self.config = config
    self.spec = tfds_input.spec_from_config(config.data)
    try:
      meta = tfds_input.info(self.spec)
    except tfds_input.tfds.core.DatasetNotFoundError as e:
      raise ValueError(f"Unknown dataset name {config.data.name!r}: not one of the in-memory "
                       f"datasets {list(IN_MEMORY)} nor a TFDS dataset ({e}).") from None
    self.step_augment = "none"      # tf.data augments (config.data.augment names its recipe)
    self.input_dtype, self.vocabulary, self.class_names = "float32", None, None
    self.num_classes, self.image_shape = meta.num_classes, tuple(meta.image_shape)
    self.pixel_range = tuple(meta.pixel_range)
    self.eval_split_names = tuple(self.spec.eval_splits)
    self.subset_ids = self.counts = None
    if config.get("job", "student") == "student":
      self.subset_ids, self.counts = tfds_input.select_subset(self.spec, config.seed)
      self.counts = np.asarray(self.counts)

  def student_batches(self, method, num_samples, start_step):
    del num_samples
    if method == "kd_transfer":
      raise ValueError("method 'kd_transfer' runs on in-memory datasets (digits) only; "
                       f"config.data.name={self.config.data.name!r}.")
    return self.tfds_input.train_batches(self.spec, self.config.batch_size, self.config.seed,
                                         start_step, subset_ids=self.subset_ids)

  def teacher_batches(self, batch_size, seed):
    return self.tfds_input.train_batches(self.spec, batch_size, seed)

  def evaluate(self, predict_fn, params, split_name, batch_size, mesh, groups):
    """Every process runs the same number of padded batches; masked rows are dropped."""
    preds, labels = [], []
    for batch in self.tfds_input.eval_batches(self.spec, split_name, batch_size):
      out = predict_fn(params, sharding.to_global(mesh, batch["image"]))
      gathered = multihost_utils.process_allgather(
          {"pred": out, "label": sharding.to_global(mesh, batch["label"]),
           "mask": sharding.to_global(mesh, batch["mask"])}, tiled=True)
      keep = np.asarray(gathered["mask"], bool)
      preds.append(np.asarray(gathered["pred"])[keep])
      labels.append(np.asarray(gathered["label"])[keep])
    return evaluation.report(np.concatenate(preds), np.concatenate(labels), self.num_classes,
                             groups)

  def sample(self, split_name, max_examples):
    """Up to max_examples of this process's part of the split, in memory."""
    images, labels = [], []
    for batch in self.tfds_input.eval_batches(self.spec, split_name, self.config.get(
        "eval_batch_size", 64)):
      keep = np.asarray(batch["mask"], bool)
      images.append(batch["image"][keep])
      labels.append(batch["label"][keep])
      if sum(len(x) for x in labels) >= max_examples:
        break
    images, labels = np.concatenate(images)[:max_examples], np.concatenate(labels)[:max_examples]
    return digits.Split(images.astype(np.float32), labels.astype(np.int32),
                        np.arange(len(labels)))
