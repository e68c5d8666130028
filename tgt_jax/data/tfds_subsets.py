"""The student's subset of a TFDS train split: few-shot, long-tailed, or listed in a file.

Chosen once on the whole split (not per process), so every process count trains
on the same examples; each process then keeps the chosen examples of its own
part (tfds_input.read_part). Examples are named by `spec.index_key`: 'tfds_id'
(default, e.g. b"imagenet2012-train.tfrecord-00017-of-01024__342"; stable for
one prepared copy of a dataset) or any per-example string feature such as
imagenet2012's 'file_name' (stable across copies).

Index file format (Places-LT / ImageNet-LT style): one example per line, its id
as the first whitespace-separated token (anything after it, such as a label, is
ignored); blank lines and lines starting with '#' are skipped. `write_index_file`
writes the ids a count rule picked, so a run can reuse them with `index_file`.

The count rules are subsets.py's (labels_per_class, or imbalance ρ with
head_count) and need one pass over the split's labels (images are not decoded,
but the records are read: for ImageNet this is about one epoch of disk reads).
"""

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from tgt_jax.data import subsets


def read_index_file(path):
  """The ids listed in an index file (bytes, in file order, duplicates dropped)."""
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"Subset index file not found: {path}")
  with tf.io.gfile.GFile(path, "r") as f:
    tokens = [line.split()[0] for line in f if line.strip() and not line.startswith("#")]
  ids = list(dict.fromkeys(t.encode() for t in tokens))
  if not ids:
    raise ValueError(f"Subset index file {path} lists no examples.")
  return ids


def write_index_file(path, ids):
  """An index file listing `ids` (bytes), readable by read_index_file."""
  with tf.io.gfile.GFile(path, "w") as f:
    f.write("".join(i.decode() + "\n" for i in ids))


def _key(example, key):
  value = example[key]
  return value if value.dtype == tf.string else tf.strings.as_string(value)


def labels_and_keys(tfds_builder, split, key="tfds_id"):
  """(labels int64 [N], keys bytes [N]) of every example of `split`, in file order."""
  ds = tfds_builder.as_dataset(split=split, shuffle_files=False,
                               decoders={"image": tfds.decode.SkipDecoding()},
                               read_config=tfds.ReadConfig(add_tfds_id=True))
  if key not in ds.element_spec:
    raise ValueError(f"config.data.index_key={key!r} is not a feature of {tfds_builder.name!r}; "
                     f"features: {sorted(ds.element_spec)}.")
  ds = ds.map(lambda ex: (ex["label"], _key(ex, key)), num_parallel_calls=tf.data.AUTOTUNE)
  labels, keys = [], []
  for label, k in tfds.as_numpy(ds.batch(8192)):
    labels.append(label)
    keys.append(k)
  if not labels:
    raise ValueError(f"Split {split!r} of {tfds_builder.name!r} is empty.")
  return np.concatenate(labels).astype(np.int64), np.concatenate(keys)


def select(tfds_builder, spec, seed):
  """(ids or None, per-class counts) of spec's subset of spec.train_split.

  ids: sorted bytes [n] of the chosen examples' spec.index_key, None when the
  student sees the whole split. counts: int [num_classes] examples per class in
  what the student sees (for the head/medium/tail groups of subsets.class_groups).
  """
  num_classes = tfds_builder.info.features["label"].num_classes
  labels, keys = labels_and_keys(tfds_builder, spec.train_split, spec.index_key)
  if len(np.unique(keys)) != len(keys):
    raise ValueError(f"index_key {spec.index_key!r} is not unique per example in "
                     f"{spec.train_split!r}: it cannot name a subset.")
  if spec.index_file:
    wanted = np.asarray(read_index_file(spec.index_file), dtype=keys.dtype)
    found = np.isin(wanted, keys)
    if not found.all():
      missing = wanted[~found]
      raise ValueError(f"{len(missing)} ids of {spec.index_file} are not in split "
                       f"{spec.train_split!r} of {spec.name!r} (index_key {spec.index_key!r}), "
                       f"e.g. {missing[:3].tolist()}.")
    chosen = np.isin(keys, wanted)
    return np.sort(keys[chosen]), np.bincount(labels[chosen], minlength=num_classes)
  counts = subsets.student_counts(labels, num_classes, spec.labels_per_class, spec.imbalance,
                                  spec.head_count or None, spec.num_labels)
  if not (spec.labels_per_class or spec.imbalance or spec.num_labels):
    return None, counts
  rows = subsets.select_rows(labels, counts, seed)
  return np.sort(keys[rows]), counts


def keep_only(ds, ids, key="tfds_id"):
  """Examples of `ds` whose `key` is in `ids` (a hash-table lookup per example)."""
  ids = tf.constant(list(ids), tf.string)
  table = tf.lookup.StaticHashTable(
      tf.lookup.KeyValueTensorInitializer(ids, tf.ones(tf.shape(ids), tf.int32)), default_value=0)
  return ds.filter(lambda example: table.lookup(_key(example, key)) > 0)
