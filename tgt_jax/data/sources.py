"""Where batches come from: in-memory data (digits, WordNet) or a TFDS dataset.

Three sources: MemorySource; RandomAccessSource (tfds_random_access.py) for a TFDS
dataset prepared as ArrayRecord, read by index per batch (e.g. fashion_mnist_debian,
which a job prepares from local files when it is missing: tfds_fashion_mnist.py); and
TfdsSource, tf.data streams over one prepared as tfrecord. config.data.reader
(auto | random_access | tf_data) picks between the last two; auto goes by the
prepared file format. All offer the same things, so every task has one code path:
  labelled_batches(start_step)    this process's rows of each global batch of the
                                  labelled subset (`with_subset=True`)
  unlabelled_batches(size, start_step)   rows of the whole train split, inputs only
  teacher_batches(size, seed, start_step)  labelled batches of the whole train split
  eval_batches(split, batch_size)  a split once, padded, with a "mask" of real rows
  sample(split, n)                 up to n examples in memory
plus num_classes, image_shape, pixel_range, input_dtype, the vocabulary of a text
dataset (else None) and the labelled subset's per-class counts.

In-memory and random-access batches are a pure function of (seed, step), so a
resumed run replays them exactly; TFDS streams are re-seeded from (seed, start
step) (tfds_input.py).
"""

import itertools

import numpy as np

from tgt_jax import sharding
from tgt_jax.data import batches, datasets, subsets
from tgt_jax.data.memory import Split

IN_MEMORY = datasets.IN_MEMORY
_UNLABELLED_STREAM = 7919       # seed offset of the unlabelled batches' own stream


def make_source(config, with_subset=True):
  """The source for config.data (in memory by name, any other name through TFDS).

  With `with_subset`, the labelled subset of config.data (and config.seed) is drawn.
  """
  if config.data.name in IN_MEMORY:
    return MemorySource(config, with_subset)
  # pylint: disable=g-import-not-at-top  (TensorFlow, only for TFDS data)
  from tgt_jax.data import tfds_fashion_mnist, tfds_input, tfds_random_access
  spec = tfds_input.spec_from_config(config.data)
  if spec.name == tfds_fashion_mnist.NAME:   # built here from local files, as tfds.load would
    tfds_fashion_mnist.prepare_if_missing(spec.data_dir, spec.raw_dir or None)
  try:
    reader = tfds_input.reader_of(spec)
  except tfds_input.tfds.core.DatasetNotFoundError as e:
    raise _unknown_dataset(config.data.name, e) from None
  if reader == "random_access":
    return tfds_random_access.RandomAccessSource(config, spec, with_subset)
  return TfdsSource(config, with_subset)


def check_name(name):
  """A one-line error naming a dataset that is neither in memory nor a registered TFDS builder
  (checked before any other setting, which may only make sense for a known dataset)."""
  if name in IN_MEMORY:
    return
  # pylint: disable=g-import-not-at-top  (TensorFlow, only for TFDS data)
  from tgt_jax.data import tfds_fashion_mnist, tfds_input     # registers fashion_mnist_debian
  del tfds_fashion_mnist
  try:
    tfds_input.tfds.builder_cls(name)
  except tfds_input.tfds.core.DatasetNotFoundError as e:
    raise _unknown_dataset(name, e) from None


def _unknown_dataset(name, error):
  return ValueError(f"Unknown dataset name {name!r}: not one of the in-memory datasets "
                    f"{list(IN_MEMORY)} nor a TFDS dataset ({error}).")


def student_subset(config, train_split, num_classes):
  """The student's labelled rows of an in-memory train split, and their per-class counts."""
  counts = subsets.student_counts(train_split.labels, num_classes, config.data.labels_per_class,
                                  config.data.imbalance, config.data.head_count or None,
                                  config.data.get("num_labels", 0))
  rows = subsets.select_rows(train_split.labels, counts, seed=config.seed)
  return train_split.take(rows), counts


def rows_of(split, rows):
  """{"image", "label"} of the given rows of an in-memory split."""
  return {"image": split.images[rows], "label": split.labels[rows]}


def batch_of(split, batch_size, seed, step):
  """This process's rows of global batch `step` of an in-memory split: {"image", "label"}."""
  rows = batches.batch_rows(len(split), batch_size, seed, step)[sharding.process_rows(batch_size)]
  return rows_of(split, rows)


def inputs_of(split, size, seed, step):
  """Inputs only ({"image"}) of batch `step` of `split`, from a stream of their own."""
  rows = batches.batch_rows(len(split), size, seed + _UNLABELLED_STREAM, step)
  return {"image": split.images[rows[sharding.process_rows(size)]]}


def split_stream(split, batch_size, seed, start_step=0):
  """This process's rows of each labelled global batch of an in-memory split, by (seed, step)."""
  for step in itertools.count(start_step):
    yield batch_of(split, batch_size, seed, step)


class MemorySource:
  """A small real dataset held in memory (digits, WordNet): exact replay on resume."""

  def __init__(self, config, with_subset=True):
    self.config = config
    self.dataset = datasets.load(config.data.name, config.data.to_dict())
    self.num_classes = self.dataset.num_classes
    self.image_shape = tuple(self.dataset.image_shape)
    self.pixel_range = tuple(self.dataset.pixel_range)
    self.input_dtype = self.dataset.input_dtype
    self.vocabulary, self.class_names = self.dataset.vocabulary, self.dataset.class_names
    self.train = self.dataset.splits["train"]
    self.eval_split_names = ("test", "validation")
    self.step_augment = config.data.get("augment", "none")   # applied inside the jitted step
    self.labelled = self.counts = None
    if with_subset:
      self.labelled, self.counts = student_subset(config, self.train, self.num_classes)

  def labelled_batches(self, start_step):
    """Batch `step` of the labelled subset: a function of (seed, step) only."""
    return split_stream(self.labelled, self.config.batch_size, self.config.seed, start_step)

  def labelled_rows(self, step):
    """Rows of the labelled subset in global batch `step` (what labelled_batches draws)."""
    return batches.batch_rows(len(self.labelled), self.config.batch_size, self.config.seed, step)

  def labelled_batch(self, rows):
    """{"image", "label"} of these rows of the labelled subset."""
    return rows_of(self.labelled, rows)

  def unlabelled_batches(self, size, start_step):
    """Inputs of the whole train split, `size` a batch, from a stream of their own."""
    for step in itertools.count(start_step):
      yield inputs_of(self.train, size, self.config.seed, step)

  def teacher_batches(self, batch_size, seed, start_step=0):
    return split_stream(self.train, batch_size, seed, start_step)

  def eval_batches(self, split_name, batch_size):
    """This process's rows of `split_name`, once, padded: {"image", "label", "mask"}."""
    split = self.dataset.splits[split_name]
    local = sharding.process_rows(batch_size)
    for rows, valid in batches.eval_batches(len(split), batch_size):
      rows, valid = rows[local], valid[local]
      yield {"image": split.images[rows], "label": split.labels[rows], "mask": valid}

  def sample(self, split_name, max_examples):
    split = self.dataset.splits[split_name]
    return split.take(np.arange(min(len(split), max_examples)))


class TfdsSource:
  """A TFDS image-classification dataset read per process with tf.data."""

  def __init__(self, config, with_subset=True):
    from tgt_jax.data import tfds_input  # pylint: disable=g-import-not-at-top  (TensorFlow)
    self.tfds_input = tfds_input
    self.config = config
    self.spec = tfds_input.spec_from_config(config.data)
    tfds_input.check_tf_data(self.spec)
    try:
      meta = tfds_input.info(self.spec)
    except tfds_input.tfds.core.DatasetNotFoundError as e:
      raise _unknown_dataset(config.data.name, e) from None
    self.step_augment = "none"      # tf.data augments (config.data.augment names its recipe)
    self.input_dtype, self.vocabulary, self.class_names = "float32", None, None
    self.num_classes, self.image_shape = meta.num_classes, tuple(meta.image_shape)
    self.pixel_range = tuple(meta.pixel_range)
    self.eval_split_names = tuple(self.spec.eval_splits)
    self.subset_ids = self.counts = None
    if with_subset:
      self.subset_ids, self.counts = tfds_input.select_subset(self.spec, config.seed)
      self.counts = np.asarray(self.counts)

  def labelled_batches(self, start_step):
    return self.tfds_input.train_batches(self.spec, self.config.batch_size, self.config.seed,
                                         start_step, subset_ids=self.subset_ids)

  def unlabelled_batches(self, size, start_step):
    raise ValueError("Unlabelled batches of the whole train split come from in-memory "
                     f"datasets {list(IN_MEMORY)} only; config.data.name="
                     f"{self.config.data.name!r}.")

  def teacher_batches(self, batch_size, seed, start_step=0):
    return self.tfds_input.train_batches(self.spec, batch_size, seed, start_step)

  def eval_batches(self, split_name, batch_size):
    """Every process yields the same number of padded batches; "mask" marks real rows."""
    return self.tfds_input.eval_batches(self.spec, split_name, batch_size)

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
    return Split(images.astype(np.float32), labels.astype(np.int32), np.arange(len(labels)))
