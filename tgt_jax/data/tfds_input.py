"""TFDS image-classification input pipelines: per-process shards, host-RAM-safe.

The tf.data reader, for datasets prepared as tfrecord. One prepared as ArrayRecord
(tf.data cannot read it) is read by index instead (tfds_random_access.py); `reader_of`
says which, from config.data.reader ("auto": by the prepared file format).

Any TFDS dataset with 'image' and 'label' features (cifar10, imagenet2012,
imagenet_lt, places365_small, ...), chosen by `config.data` (see `spec_from_config`).

  spec = spec_from_config(config.data)
  meta = info(spec)                       # num_classes, split sizes, image shape: no data read
  ids, counts = select_subset(spec, seed) # student's subset (one pass over the labels)
  train = train_batches(spec, global_batch_size, seed, start_step, subset_ids=ids)
  for batch in eval_batches(spec, "test", global_batch_size): ...

Each process reads its own part, `tfds.even_splits(split, process_count)[process_index]`,
and yields numpy batches of its rows only (global_batch_size // process_count);
sharding.to_global turns them into global arrays.

* Training streams shuffle (bounded buffer), repeat and augment (tfds_preprocess.py).
  They are a function of (seed, start_step, process_index): a run resumed at step s
  gets a freshly seeded stream, not a replay of the order the first run would have
  seen from step s (the in-memory digits pipeline, batches.py, does replay).
* Evaluation covers a split exactly once: every process yields the same number of
  batches (from the split sizes), padding rows have mask=False. Evaluation splits
  are used as they are: ImageNet-LT's and Places-LT's val/test are balanced.
* Host RAM: images stay encoded until after filtering and shuffling, the shuffle
  buffer is bounded and nothing is cached unless `cache=True` (small datasets).
"""

import dataclasses
import math

import jax
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from tgt_jax.data import tfds_fashion_mnist  # pylint: disable=unused-import  (its TFDS builder)
from tgt_jax.data import tfds_preprocess
from tgt_jax.data import tfds_subsets

_SKIP_IMAGE = {"image": tfds.decode.SkipDecoding()}  # decode after filtering and shuffling
READERS = ("auto", "tf_data", "random_access")
IN_STEP_AUGMENTS = ("none", "shift", "flip_shift")   # random_access: augment.py, in the step


@dataclasses.dataclass(frozen=True)
class TfdsSpec:
  """What to read and how to preprocess it; built from config.data by spec_from_config."""
  name: str
  data_dir: str | None = None            # None → $TFDS_DATA_DIR or ~/tensorflow_datasets
  train_split: str = "train"
  # name → TFDS split string, e.g. {"validation": "validation"} or {"val": "train[90%:]"}
  eval_splits: dict = dataclasses.field(default_factory=lambda: {"test": "test"})
  image_size: int = 224
  channels: int = 3
  pixel_range: tuple = (-1.0, 1.0)
  augment: str = "inception_crop_flip"   # tfds_preprocess.AUGMENTS
  area_range: tuple = (0.08, 1.0)        # inception_crop_flip: crop area / image area
  crop_padding: int = 4                  # crop_flip: zero padding before the random crop
  crop_fraction: float = 1.0             # central crop of the short side; ImageNet: 0.875
  shuffle_buffer: int = 10_000
  cache: bool = False                    # cache encoded examples in RAM: small datasets only
  ram_budget_gb: float = 0.0             # tf.data autotune RAM budget; 0 → tf.data's default
  threads: int = 0                       # private tf.data threadpool size; 0 → shared default
  labels_per_class: int = 0              # student subset: k per class, or
  imbalance: float = 0.0                 # ... a long tail of ratio ρ (subsets.py), or
  head_count: int = 0                    # (long-tail head class size; 0 → smallest class)
  index_file: str = ""                   # ... the examples listed in this file (tfds_subsets.py)
  index_key: str = "tfds_id"             # the feature the subset's ids name
  num_labels: int = 0                    # ... or this many labels in proportion to the classes
  reader: str = "auto"                   # READERS: tf_data | random_access | auto (file format)
  validation_size: int = 0               # random_access: a stratified held-out part of train
  raw_dir: str = ""                      # fashion_mnist_debian: its idx files ("" → Debian's)


@dataclasses.dataclass(frozen=True)
class Metadata:
  num_classes: int
  split_sizes: dict          # "train" and each eval split name → examples (when TFDS knows)
  image_shape: tuple         # after preprocessing
  pixel_range: tuple


def spec_from_config(data_config):
  """config.data (ConfigDict or dict) → TfdsSpec; errors name the bad key or value."""
  values = data_config.to_dict() if hasattr(data_config, "to_dict") else dict(data_config)
  known = [f.name for f in dataclasses.fields(TfdsSpec)]
  unknown = sorted(set(values) - set(known))
  if unknown:
    raise ValueError(f"Unknown config.data keys {unknown}; known: {known}.")
  if not values.get("name"):
    raise ValueError("config.data.name must name a TFDS dataset, e.g. 'cifar10'.")
  for key in ("pixel_range", "area_range"):
    if key in values:
      values[key] = tuple(float(v) for v in values[key])
  if "eval_splits" in values:
    values["eval_splits"] = dict(values["eval_splits"])
  values["data_dir"] = values.get("data_dir") or None
  spec = TfdsSpec(**values)
  _check(spec)
  return spec


def _check(spec):
  def bad(key, why):
    raise ValueError(f"config.data.{key}={getattr(spec, key)!r}: {why}.")
  if spec.reader not in READERS:
    bad("reader", f"choose one of {list(READERS)}")
  augments = {"tf_data": tfds_preprocess.AUGMENTS, "random_access": IN_STEP_AUGMENTS}.get(
      spec.reader, tuple(dict.fromkeys(tfds_preprocess.AUGMENTS + IN_STEP_AUGMENTS)))
  if spec.augment not in augments:
    bad("augment", f"unknown augment; choose one of {list(augments)}")
  if spec.image_size <= 0:
    bad("image_size", "must be > 0")
  if spec.channels not in (1, 3):
    bad("channels", "must be 1 or 3")
  if len(spec.pixel_range) != 2 or spec.pixel_range[0] >= spec.pixel_range[1]:
    bad("pixel_range", "must be (low, high) with low < high")
  if len(spec.area_range) != 2 or not 0 < spec.area_range[0] <= spec.area_range[1] <= 1:
    bad("area_range", "must be (low, high) with 0 < low <= high <= 1")
  if spec.crop_padding < 0:
    bad("crop_padding", "must be >= 0")
  if not 0 < spec.crop_fraction <= 1:
    bad("crop_fraction", "must be in (0, 1]")
  if spec.shuffle_buffer < 1:
    bad("shuffle_buffer", "must be >= 1")
  if not spec.eval_splits or not all(isinstance(v, str) for v in spec.eval_splits.values()):
    bad("eval_splits", "must map names to TFDS split strings, e.g. {'test': 'test'}")
  if spec.index_file and (spec.labels_per_class or spec.imbalance or spec.num_labels):
    bad("index_file", "set index_file, labels_per_class, imbalance or num_labels, not several")


def reader_of(spec):
  """"random_access" for a dataset prepared as ArrayRecord (or by config), else "tf_data"."""
  if spec.reader != "auto":
    return spec.reader
  array_record = builder(spec).info.file_format == tfds.core.FileFormat.ARRAY_RECORD
  return "random_access" if array_record else "tf_data"


def check_tf_data(spec):
  """The values the tf.data reader cannot honour, named."""
  if spec.augment not in tfds_preprocess.AUGMENTS:
    raise ValueError(f"config.data.augment={spec.augment!r} is applied in the step, for data read "
                     f"by index; {spec.name!r} is read by tf.data: choose one of "
                     f"{list(tfds_preprocess.AUGMENTS)}.")
  if spec.validation_size:
    raise ValueError(f"config.data.validation_size={spec.validation_size}: a held-out part of "
                     f"train is cut for data read by index only; name a split in "
                     f"config.data.eval_splits instead (e.g. {{'validation': 'train[90%:]'}}).")


def builder(spec):
  return tfds.builder(spec.name, data_dir=spec.data_dir)


def num_examples(tfds_builder, split):
  """Examples in `split` (any TFDS split string or even_splits part); errors name the split.

  Under tfds.testing.mock_data (USE_CODE) TFDS knows no split sizes: the size then
  comes from the mock dataset's cardinality.
  """
  splits = tfds_builder.info.splits
  if not splits:
    return int(tfds_builder.as_dataset(split=split, decoders=_SKIP_IMAGE).cardinality())
  try:
    return splits[split].num_examples
  except (KeyError, ValueError, AssertionError) as e:
    raise ValueError(f"Unknown or invalid split {str(split)!r} of TFDS dataset "
                     f"{tfds_builder.name!r} ({e}); available splits: {sorted(splits)}.") from e


def info(spec):
  """Metadata without reading any examples (TFDS's dataset_info.json)."""
  b = builder(spec)
  splits = {"train": spec.train_split, **spec.eval_splits}
  sizes = {name: num_examples(b, split) for name, split in splits.items()} if b.info.splits else {}
  return Metadata(b.info.features["label"].num_classes, sizes,
                  (spec.image_size, spec.image_size, spec.channels), spec.pixel_range)


def select_subset(spec, seed):
  """(ids, class_counts) of the student's training subset; ids is None for the whole split.

  See tfds_subsets.py: a seeded per-class count rule or an index file, picked on
  the whole train split so it does not depend on the number of processes.
  """
  return tfds_subsets.select(builder(spec), spec, seed)


def _process(process_index, process_count):
  index = jax.process_index() if process_index is None else process_index
  count = jax.process_count() if process_count is None else process_count
  if not 0 <= index < count:
    raise ValueError(f"process_index={index} is not in [0, process_count={count}).")
  return index, count


def local_batch_size(global_batch_size, process_count):
  if global_batch_size <= 0 or global_batch_size % process_count:
    raise ValueError(f"global batch size {global_batch_size} is not divisible by the number "
                     f"of processes ({process_count}).")
  return global_batch_size // process_count


def read_part(spec, split, process_index=None, process_count=None, subset_ids=None,
              shuffle_seed=None):
  """This process's examples of `split`: undecoded images, labels and 'tfds_id'.

  One pass, in file order unless `shuffle_seed` shuffles the files. With
  `subset_ids` only the examples whose `spec.index_key` is listed are kept.
  """
  index, count = _process(process_index, process_count)
  b = builder(spec)
  num_examples(b, split)  # a clear error for an unknown split
  part = tfds.even_splits(split, n=count, drop_remainder=False)[index]
  read_config = tfds.ReadConfig(add_tfds_id=True, shuffle_seed=shuffle_seed)
  ds = b.as_dataset(split=part, shuffle_files=shuffle_seed is not None, decoders=_SKIP_IMAGE,
                    read_config=read_config)
  if subset_ids is not None:
    ds = tfds_subsets.keep_only(ds, subset_ids, spec.index_key)
  return ds


def _options(ds, spec):
  options = tf.data.Options()
  options.deterministic = True
  if spec.threads:
    options.threading.private_threadpool_size = spec.threads
  if spec.ram_budget_gb:
    options.autotune.ram_budget = int(spec.ram_budget_gb * 2**30)
  return ds.with_options(options)


def _output(example, image, with_ids):
  out = {"image": image, "label": tf.cast(example["label"], tf.int32)}
  if with_ids:
    out["tfds_id"] = example["tfds_id"]
  return out


def train_batches(spec, global_batch_size, seed, start_step=0, subset_ids=None,
                  process_index=None, process_count=None, with_ids=False):
  """Endless iterator of this process's training batches {"image", "label"} (numpy).

  image float32 [local, S, S, C] in spec.pixel_range, label int32 [local], where
  local = global_batch_size // process_count. Seeded by (seed, start_step, process).
  """
  index, count = _process(process_index, process_count)
  local = local_batch_size(global_batch_size, count)
  files_seed, shuffle_seed, *aug_seed = np.random.SeedSequence(
      [seed, start_step, index]).generate_state(4)
  ds = read_part(spec, spec.train_split, index, count, subset_ids, shuffle_seed=int(files_seed))
  if subset_ids is not None and next(iter(ds.take(1)), None) is None:
    raise ValueError(f"Process {index} of {count} has none of the {len(subset_ids)} subset "
                     f"examples in its part of split {spec.train_split!r}; use fewer processes.")
  if spec.cache:
    ds = ds.cache()
  ds = ds.shuffle(spec.shuffle_buffer, seed=int(shuffle_seed), reshuffle_each_iteration=True)
  ds = ds.repeat().enumerate()
  aug_seed = tf.constant(np.asarray(aug_seed, np.int64))

  def preprocess(i, example):
    example_seed = tf.random.experimental.stateless_fold_in(aug_seed, i)
    image = tfds_preprocess.train_image(example["image"], spec, example_seed)
    return _output(example, image, with_ids)

  ds = ds.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.batch(local, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
  return iter(tfds.as_numpy(_options(ds, spec)))


def _eval_plan(spec, split, global_batch_size, process_count):
  """(TFDS split, per-process sizes, local batch size, batches per process)."""
  tfds_split = spec.eval_splits.get(split, split)
  local = local_batch_size(global_batch_size, process_count)
  b = builder(spec)
  num_examples(b, tfds_split)
  parts = tfds.even_splits(tfds_split, n=process_count, drop_remainder=False)
  sizes = [num_examples(b, part) for part in parts]
  return tfds_split, sizes, local, math.ceil(max(sizes) / local)


def eval_batches(spec, split, global_batch_size, process_index=None, process_count=None,
                 with_ids=False):
  """This process's rows of `split`, once, as {"image", "label", "mask"} numpy batches.

  `split` is a name in spec.eval_splits or a TFDS split string. Every process
  yields the same number of batches; padding rows are zeros with mask False.
  """
  index, count = _process(process_index, process_count)
  tfds_split, sizes, local, batches = _eval_plan(spec, split, global_batch_size, count)
  ds = read_part(spec, tfds_split, index, count)

  def preprocess(example):
    out = _output(example, tfds_preprocess.eval_image(example["image"], spec), with_ids)
    return {**out, "mask": tf.constant(True)}

  ds = ds.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
  padding = tf.nest.map_structure(lambda s: tf.zeros(s.shape, s.dtype), ds.element_spec)
  pad = batches * local - sizes[index]
  ds = ds.concatenate(tf.data.Dataset.from_tensors(padding).repeat(pad))
  ds = ds.batch(local, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
  return iter(tfds.as_numpy(_options(ds, spec)))
