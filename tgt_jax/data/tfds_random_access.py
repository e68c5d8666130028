"""Random-access input over a TFDS dataset prepared as ArrayRecord: batches by (seed, step).

TFDS reads ArrayRecord files by index (`tfds.data_source`; tf.data cannot read
them), so batches here are drawn as the in-memory ones are (batches.batch_rows):
the row ids of global batch `step` are a function of (seed, step) only, each
process reads and decodes only its own rows of them (sharding.process_rows), and
a run resumed at step s reads exactly what an uninterrupted run reads at step s.
Nothing but the labels (one int per example) is held in memory; images are read
per batch, so this scales to ImageNet-sized splits.

Parts of the train split (the rows of its records, fixed once prepared):
  validation   `validation_size` examples, stratified (in proportion to the class
               sizes), drawn with VALIDATION_SEED, not the run's seed: the same
               held-out part for every seed, method and subset; evaluated, never trained on
  pool         the rest: the teacher trains on it, the student's labelled subset is drawn
               from it (labels_per_class, imbalance + head_count, num_labels, or an
               index file, as subsets.py and tfds_subsets.py do)
Test (config.data.eval_splits) is for reporting only.

Examples are named, for index files, by `tfds_id` (b"<shard file>__<record>", the
form TFDS gives tfrecord examples) or any scalar feature named by index_key.
Images are decoded to uint8 by TFDS (PIL), centre-cropped and resized only when
their size is not image_size, and scaled to pixel_range; augmentation (data.augment:
none | shift | flip_shift) runs inside the jitted step (step_augment), as for digits.
"""

import concurrent.futures
import functools
import hashlib
import itertools
import threading

import jax
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from tgt_jax import sharding
from tgt_jax.data import augment, batches, subsets, tfds_input, tfds_preprocess, tfds_subsets
from tgt_jax.data.memory import Split

VALIDATION = "validation"
VALIDATION_SEED = 20220812     # fixed forever: changing it changes every number
UNLABELLED_STREAM = 7919       # seed offset of the unlabelled batches (as sources.py)


def check_spec(spec):
  """The values only this reader reads, named when wrong."""
  if spec.augment not in augment.AUGMENTATIONS:
    raise ValueError(f"config.data.augment={spec.augment!r}: {spec.name!r} is read by index "
                     f"(ArrayRecord) and augmented in the jitted step; choose one of "
                     f"{list(augment.AUGMENTATIONS)}.")
  if spec.validation_size < 0:
    raise ValueError(f"config.data.validation_size={spec.validation_size} must be >= 0.")
  if spec.validation_size and VALIDATION in spec.eval_splits:
    raise ValueError(f"config.data.eval_splits names {VALIDATION!r} and validation_size="
                     f"{spec.validation_size} cuts one from train: keep one of them.")


def record_ids(tfds_builder, split):
  """tfds_id of every record of `split`, in data-source order: b"<shard file>__<record>"."""
  ids = []
  for instruction in tfds_builder.info.splits[split].file_instructions:
    name = instruction.filename.rsplit("/", 1)[-1]
    ids.extend(f"{name}__{i}".encode()
               for i in range(instruction.skip, instruction.skip + instruction.take))
  return np.asarray(ids, dtype=object)


@functools.lru_cache(maxsize=16)
def _labels_and_keys(data_dir, name, split, key):
  """(labels int64 [N], keys [N] or None) of a split: one pass over its records, images not
  decoded (one batched parse), kept for the process (a teacher job then a student job)."""
  b = tfds.builder(name, data_dir=data_dir)
  raw = b.as_data_source(split, deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)
  features = {"label": tf.io.FixedLenFeature([], tf.int64)}
  wanted = key not in ("tfds_id", None)
  if wanted:
    if key not in b.info.features:
      raise ValueError(f"config.data.index_key={key!r} is not a feature of {name!r}; features: "
                       f"{sorted(b.info.features)} or 'tfds_id'.")
    features[key] = tf.io.FixedLenFeature([], b.info.features[key].tf_dtype)
  labels, keys = [], []
  for start in range(0, len(raw), 8192):
    parsed = tf.io.parse_example(raw.__getitems__(range(start, min(start + 8192, len(raw)))),
                                 features)
    labels.append(parsed["label"].numpy())
    if wanted:
      keys.append(parsed[key].numpy())
  if not labels:
    raise ValueError(f"Split {split!r} of {name!r} is empty.")
  labels = np.concatenate(labels)
  if key == "tfds_id":
    keys = record_ids(b, split)
  elif wanted:      # bytes, as an index file's ids are (numbers as their decimal string)
    keys = np.asarray([k if isinstance(k, bytes) else str(k).encode()
                       for k in np.concatenate(keys).tolist()], dtype=object)
    if len(set(keys.tolist())) != len(keys):
      raise ValueError(f"index_key {key!r} is not unique per example in {split!r} of {name!r}: "
                       "it cannot name a subset.")
  return labels, keys if wanted or key == "tfds_id" else None


def validation_rows(labels, size, num_classes, seed=VALIDATION_SEED):
  """`size` rows of a split, per class in proportion to the class sizes, drawn with `seed`."""
  if not size:
    return np.zeros(0, np.int64)
  if not num_classes <= size < len(labels):
    raise ValueError(f"config.data.validation_size={size} must be 0 or between the number of "
                     f"classes ({num_classes}) and the train split's size ({len(labels)}).")
  counts = subsets.proportional_counts(np.bincount(labels, minlength=num_classes), size)
  return subsets.select_rows(labels, counts, seed)


def scale_images(images, spec):
  """uint8 images (a batch, or a list of any sizes) → float32 [n, S, S, C] in spec.pixel_range."""
  size, channels = spec.image_size, spec.channels
  shapes = {tuple(np.shape(image)) for image in images}
  if shapes == {(size, size, channels)}:
    pixels = np.stack(images).astype(np.float32)
  else:
    bad = sorted(s for s in shapes if len(s) != 3 or s[-1] != channels)
    if bad:
      raise ValueError(f"Images of {spec.name!r} have shape {bad[0]}, but config.data.channels="
                       f"{channels}.")
    pixels = np.stack([tfds_preprocess.resize(tfds_preprocess.center_crop(
        tf.constant(image), spec.crop_fraction), size, channels).numpy() for image in images])
  low, high = spec.pixel_range
  return np.clip(pixels, 0, 255) * np.float32((high - low) / 255.0) + np.float32(low)


def fingerprint(name, split):
  """16 hex digits naming the dataset and the records and labels of `split` (what a teacher
  trained on the pool saw): another validation_size or copy of the data gives another."""
  digest = hashlib.sha256(name.encode())
  digest.update(np.ascontiguousarray(split.indices).tobytes())
  digest.update(np.ascontiguousarray(split.labels).tobytes())
  return digest.hexdigest()[:16]


class IndexedSplit:
  """Rows of one TFDS split, by their record index: labels in memory, images read on demand."""

  def __init__(self, source, split, indices, labels):
    self.source, self.split = source, split
    self.indices = np.asarray(indices, np.int64)        # records of the TFDS split
    self.labels = np.asarray(labels, np.int32)

  def __len__(self):
    return len(self.indices)

  def read(self, rows):
    """{"image", "label"} of these rows (numpy), read and decoded now."""
    return self.source.read(self.split, self.indices[rows])

  def take(self, rows):
    """An in-memory Split of these rows (small subsets only)."""
    batch = self.read(rows)
    return Split(batch["image"], batch["label"], self.indices[rows])


class RandomAccessSource:
  """A TFDS image-classification dataset read by index: sources.py's interface, exact resume."""

  def __init__(self, config, spec, with_subset=True):
    check_spec(spec)
    self.config, self.spec = config, spec
    self.builder = tfds_input.builder(spec)
    info = self.builder.info
    if info.file_format != tfds.core.FileFormat.ARRAY_RECORD:
      raise ValueError(f"TFDS {spec.name!r} in {self.builder.data_dir} is prepared as "
                       f"{info.file_format.value}; reading by index needs array_record "
                       "(prepare it with file_format='array_record', or set "
                       "config.data.reader='tf_data').")
    label = info.features["label"]
    self.num_classes = label.num_classes
    self.class_names = tuple(label.names)
    self.image_shape = (spec.image_size, spec.image_size, spec.channels)
    self.pixel_range = tuple(spec.pixel_range)
    self.input_dtype, self.vocabulary = "float32", None
    self.step_augment = spec.augment                # applied inside the jitted step
    self._sources, self._lock = {}, threading.Lock()
    labels, self._keys = self._labels(spec.train_split, spec.index_key)
    held_out = validation_rows(labels, spec.validation_size, self.num_classes)
    pool = np.setdiff1d(np.arange(len(labels)), held_out)
    self.eval_parts = {}
    for name, split in spec.eval_splits.items():
      split_labels = self._labels(split)[0]
      self.eval_parts[name] = IndexedSplit(self, split, np.arange(len(split_labels)), split_labels)
    if spec.validation_size:
      self.eval_parts[VALIDATION] = IndexedSplit(self, spec.train_split, held_out, labels[held_out])
    self.pool = IndexedSplit(self, spec.train_split, pool, labels[pool])
    self.eval_split_names = tuple(self.eval_parts)
    self.pool_fingerprint = fingerprint(f"{spec.name}:{self.builder.version}", self.pool)
    self.labelled = self.counts = None
    if with_subset:
      self.labelled, self.counts = self._subset()

  def _labels(self, split, key=None):
    tfds_input.num_examples(self.builder, split)    # a named error for an unknown split
    return _labels_and_keys(self.spec.data_dir, self.spec.name, split, key)

  def _source(self, split):
    if split not in self._sources:
      self._sources[split] = self.builder.as_data_source(split)
    return self._sources[split]

  def read(self, split, records):
    """{"image" float32, "label" int32} of these records of a TFDS split, decoded now."""
    with self._lock:     # a training stream's reader thread and an evaluation may both read
      examples = self._source(split).__getitems__([int(r) for r in records])
    return {"image": scale_images([ex["image"] for ex in examples], self.spec),
            "label": np.asarray([ex["label"] for ex in examples], np.int32)}

  def _subset(self):
    """The student's labelled rows of the pool and their per-class counts."""
    spec, pool = self.spec, self.pool
    if spec.index_file:
      wanted = np.asarray(tfds_subsets.read_index_file(spec.index_file), dtype=object)
      keys = self._keys[pool.indices]
      found = np.isin(wanted, keys)
      if not found.all():
        missing = wanted[~found]
        raise ValueError(f"{len(missing)} ids of {spec.index_file} are not in the train pool "
                         f"of {spec.name!r} (split {spec.train_split!r} less the "
                         f"{spec.validation_size} validation examples; index_key "
                         f"{spec.index_key!r}), e.g. {missing[:3].tolist()}.")
      rows = np.flatnonzero(np.isin(keys, wanted))
    else:
      counts = subsets.student_counts(pool.labels, self.num_classes, spec.labels_per_class,
                                      spec.imbalance, spec.head_count or None, spec.num_labels)
      rows = subsets.select_rows(pool.labels, counts, self.config.seed)
    labelled = IndexedSplit(self, spec.train_split, pool.indices[rows], pool.labels[rows])
    return labelled, np.bincount(labelled.labels, minlength=self.num_classes)

  # The interface of sources.MemorySource.

  def labelled_rows(self, step):
    """Rows of the labelled subset in global batch `step` (what labelled_batches draws)."""
    return batches.batch_rows(len(self.labelled), self.config.batch_size, self.config.seed, step)

  def labelled_batch(self, rows):
    return self.labelled.read(rows)

  def labelled_batches(self, start_step):
    """This process's rows of each global batch of the labelled subset, by (seed, step)."""
    return self._stream(self.labelled, self.config.batch_size, self.config.seed, start_step)

  def teacher_batches(self, batch_size, seed, start_step=0):
    """Labelled batches of the pool (the train split less validation), by (seed, step)."""
    return self._stream(self.pool, batch_size, seed, start_step)

  def unlabelled_batches(self, size, start_step):
    """Inputs of the pool, `size` a batch, from a stream of their own."""
    for batch in self._stream(self.pool, size, self.config.seed + UNLABELLED_STREAM, start_step):
      yield {"image": batch["image"]}

  @staticmethod
  def _stream(split, batch_size, seed, start_step):
    local = _local_rows(batch_size)
    rows = lambda step: batches.batch_rows(len(split), batch_size, seed, step)[local]
    yield from _read_ahead(split.read, map(rows, itertools.count(start_step)))

  def eval_batches(self, split_name, batch_size):
    """This process's rows of `split_name`, once, padded: {"image", "label", "mask"}."""
    split = self._split(split_name)
    local = _local_rows(batch_size)
    read = lambda plan: {**split.read(plan[0][local]), "mask": plan[1][local]}
    yield from _read_ahead(read, batches.eval_batches(len(split), batch_size))

  def sample(self, split_name, max_examples):
    split = self._split(split_name)
    return split.take(np.arange(min(len(split), max_examples)))

  def _split(self, name):
    if name not in self.eval_parts:
      raise ValueError(f"Unknown split {name!r} of {self.spec.name!r}; this run has "
                       f"{list(self.eval_parts)} (config.data.eval_splits, validation_size).")
    return self.eval_parts[name]


def _read_ahead(read, items):
  """read(item) for each item, in order; the next one is read on a thread while the caller
  uses this one (reading and decoding a batch of 64 takes ~14 ms on 2 cores)."""
  with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="tfds_read") as pool:
    pending = None
    for item in items:
      future = pool.submit(read, item)
      if pending is not None:
        yield pending.result()
      pending = future
    if pending is not None:
      yield pending.result()


def _local_rows(global_batch_size):
  """This process's slice of a global batch; the batch must divide among the processes."""
  tfds_input.local_batch_size(global_batch_size, jax.process_count())
  return sharding.process_rows(global_batch_size)
