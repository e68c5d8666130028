"""The random-access source on a tiny ArrayRecord dataset: batches by (seed, step), exactly.

The dataset is fashion_mnist_debian built from tiny idx files (200 train images,
20 per class; 50 test), so every check runs offline in a few seconds.
"""

import hashlib
import os

import jax
import ml_collections
import numpy as np
import pytest

from tgt_jax.data import sources, tfds_input, tfds_subsets
from tgt_jax.data import tfds_random_access as random_access
from tgt_jax.data import tfds_fashion_mnist as fashion_mnist

TRAIN, TEST = 200, 50
CONTENT = fashion_mnist.Content(sizes={"train": TRAIN, "test": TEST})


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  """(data_dir, {digest of an image's uint8 bytes: (split, label)})."""
  raw = str(tmp_path_factory.mktemp("idx"))
  rng = np.random.default_rng(0)
  where = {}
  for split, n in CONTENT.sizes.items():
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.permutation(np.arange(n) % 10)
    images_file, labels_file = fashion_mnist.FILES[split]
    fashion_mnist.write_idx(os.path.join(raw, images_file), images)
    fashion_mnist.write_idx(os.path.join(raw, labels_file), labels)
    where.update({_digest(image): (split, int(label)) for image, label in zip(images, labels)})
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  fashion_mnist.prepare(data_dir, raw, content=CONTENT)
  return data_dir, where


def _digest(image):
  return hashlib.sha1(np.asarray(image, np.uint8).reshape(28, 28).tobytes()).hexdigest()


def _digests(batch):
  """The images of a batch as digests of their uint8 pixels (pixel_range (0, 1))."""
  return [_digest(np.round(image * 255)) for image in batch["image"]]


def make_config(data_dir, seed=0, batch_size=16, **data):
  defaults = dict(name=fashion_mnist.NAME, data_dir=data_dir, reader="random_access",
                  eval_splits={"test": "test"}, validation_size=50, image_size=28, channels=1,
                  pixel_range=(0.0, 1.0), labels_per_class=3, augment="shift")
  return ml_collections.ConfigDict(dict(seed=seed, batch_size=batch_size,
                                        data={**defaults, **data}))


def take(stream, n):
  return [next(stream) for _ in range(n)]


def assert_same(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert set(x) == set(y)
    for key in x:
      np.testing.assert_array_equal(x[key], y[key])


def test_make_source_reads_by_index_with_the_interface_of_the_others(tiny):
  data_dir, where = tiny
  source = sources.make_source(make_config(data_dir))
  assert isinstance(source, random_access.RandomAccessSource)
  assert (source.num_classes, source.image_shape, source.pixel_range) == (10, (28, 28, 1),
                                                                          (0.0, 1.0))
  assert source.input_dtype == "float32" and source.vocabulary is None
  assert source.class_names == fashion_mnist.CLASS_NAMES and source.step_augment == "shift"
  assert source.eval_split_names == ("test", "validation")
  assert source.counts.tolist() == [3] * 10 and len(source.labelled) == 30
  batch = next(source.labelled_batches(0))
  assert batch["image"].shape == (16, 28, 28, 1) and batch["image"].dtype == np.float32
  assert batch["label"].dtype == np.int32
  # The pixels are the idx file's, scaled to pixel_range, under the idx file's label.
  assert [where[d] for d in _digests(batch)] == [("train", int(y)) for y in batch["label"]]
  assert set(batch["label"].tolist()) <= set(range(10))
  sample = source.sample("test", 7)
  assert sample.images.shape == (7, 28, 28, 1) and len(sample) == 7


def test_batches_are_a_function_of_seed_and_step(tiny):
  """A restart at step s (a new source, a new stream) yields what an unbroken run yields."""
  data_dir, _ = tiny
  config = make_config(data_dir)
  unbroken = sources.make_source(config)
  first = take(unbroken.labelled_batches(0), 8)
  restarted = sources.make_source(config)
  assert_same(take(restarted.labelled_batches(5), 3), first[5:])
  rows = unbroken.labelled_rows(6)
  assert_same([unbroken.labelled_batch(rows)], [first[6]])
  assert_same(take(unbroken.teacher_batches(32, 4, 3), 2),
              take(restarted.teacher_batches(32, 4), 5)[3:])
  assert_same(take(unbroken.unlabelled_batches(16, 2), 1),
              take(restarted.unlabelled_batches(16, 0), 3)[2:])
  other = sources.make_source(make_config(data_dir, seed=1))
  assert other.labelled.indices.tolist() != unbroken.labelled.indices.tolist()
  assert not np.array_equal(next(other.labelled_batches(0))["image"], first[0]["image"])
  # 30 labelled rows, batch 16: every row once per epoch (two batches less two rows).
  epoch = np.concatenate([unbroken.labelled_rows(s) for s in range(2)])[:30]
  assert sorted(epoch.tolist()) == list(range(30))


def _as_process(monkeypatch, index, count):
  monkeypatch.setattr(jax, "process_index", lambda: index)
  monkeypatch.setattr(jax, "process_count", lambda: count)


def test_each_of_two_processes_reads_its_rows_and_together_they_tile_the_batch(tiny, monkeypatch):
  data_dir, _ = tiny
  config = make_config(data_dir)
  whole = sources.make_source(config)
  want = take(whole.labelled_batches(3), 2)
  evals = list(whole.eval_batches("test", 32))
  parts, eval_parts = [], []
  for index in range(2):
    _as_process(monkeypatch, index, 2)
    source = sources.make_source(config)
    parts.append(take(source.labelled_batches(3), 2))
    eval_parts.append(list(source.eval_batches("test", 32)))
  for step in range(2):
    assert parts[0][step]["image"].shape[0] == 8
    tiled = {k: np.concatenate([parts[0][step][k], parts[1][step][k]]) for k in want[step]}
    assert_same([tiled], [want[step]])
  assert [len(p) for p in eval_parts] == [2, 2]          # 50 test rows, global batch 32
  for step, batch in enumerate(evals):
    tiled = {k: np.concatenate([eval_parts[0][step][k], eval_parts[1][step][k]]) for k in batch}
    assert_same([tiled], [batch])
  assert sum(int(b["mask"].sum()) for b in evals) == TEST
  _as_process(monkeypatch, 0, 3)
  with pytest.raises(ValueError, match=r"global batch size 16 is not divisible .* \(3\)"):
    next(sources.make_source(config).labelled_batches(0))


def test_validation_is_stratified_fixed_and_disjoint_from_what_trains(tiny):
  data_dir, where = tiny
  for seed, subset in ((0, {}), (1, {}), (0, dict(labels_per_class=0, imbalance=4.0)),
                       (0, dict(labels_per_class=0))):
    source = sources.make_source(make_config(data_dir, seed=seed, **subset))
    validation = source.eval_parts["validation"]
    assert np.bincount(validation.labels, minlength=10).tolist() == [5] * 10
    if seed == 0 and not subset:
      first = validation.indices.tolist()
    assert validation.indices.tolist() == first          # not the run's seed, not the subset
    assert not set(validation.indices) & set(source.pool.indices)
    assert len(source.pool) == TRAIN - 50
    assert set(source.labelled.indices) <= set(source.pool.indices)
    seen = {d for b in take(source.teacher_batches(50, 0), 8) for d in _digests(b)}
    held = {d for b in source.eval_batches("validation", 25) for d in _digests(b)}
    assert len(held) == 50 and not seen & held and len(seen) == TRAIN - 50
    assert {where[d][0] for d in held} == {"train"}
  same = sources.make_source(make_config(data_dir, seed=3, labels_per_class=1))
  other = sources.make_source(make_config(data_dir, validation_size=20))
  assert same.pool_fingerprint == source.pool_fingerprint != other.pool_fingerprint
  long_tail = sources.make_source(make_config(data_dir, labels_per_class=0, imbalance=4.0))
  assert long_tail.counts.tolist() == [15, 13, 11, 9, 8, 7, 6, 5, 4, 4]   # round(15·4^(-c/9))
  whole = sources.make_source(make_config(data_dir, labels_per_class=0))
  assert whole.counts.tolist() == [15] * 10 and len(whole.labelled) == TRAIN - 50


def test_index_file_subset_names_records_by_tfds_id(tiny, tmp_path):
  data_dir, _ = tiny
  source = sources.make_source(make_config(data_dir))
  ids = random_access.record_ids(tfds_input.builder(source.spec), "train")
  assert ids[0].startswith(b"fashion_mnist_debian-train.array_record-00000-of-00001__")
  listed = ids[source.pool.indices[::9]]
  path = str(tmp_path / "subset.txt")
  tfds_subsets.write_index_file(path, listed)
  chosen = sources.make_source(make_config(data_dir, labels_per_class=0, index_file=path))
  assert sorted(ids[chosen.labelled.indices]) == sorted(listed)
  assert chosen.counts.sum() == len(listed)
  held_out = ids[source.eval_parts["validation"].indices[:2]]
  tfds_subsets.write_index_file(path, [*listed, *held_out])
  with pytest.raises(ValueError, match=r"2 ids of .*subset.txt are not in the train pool"):
    sources.make_source(make_config(data_dir, labels_per_class=0, index_file=path))


def test_images_of_other_sizes_are_cropped_and_resized_and_scaled():
  spec = tfds_input.spec_from_config(dict(name="x", image_size=8, channels=3,
                                          pixel_range=(-1.0, 1.0), augment="none"))
  images = [np.full((10, 14, 3), 255, np.uint8), np.zeros((8, 8, 3), np.uint8)]
  out = random_access.scale_images(images, spec)
  assert out.shape == (2, 8, 8, 3) and out.dtype == np.float32
  np.testing.assert_allclose(out[0], 1.0, atol=1e-5)
  np.testing.assert_allclose(out[1], -1.0)
  with pytest.raises(ValueError, match=r"shape \(8, 8, 1\), but config.data.channels=3"):
    random_access.scale_images([np.zeros((8, 8, 1), np.uint8)], spec)


def test_bad_values_are_named(tiny):
  data_dir, _ = tiny
  for data, match in ((dict(augment="crop_flip"),
                       r"augment='crop_flip': unknown augment.*'flip_shift'\]"),
                      (dict(validation_size=5), r"validation_size=5 must be 0 or between"),
                      (dict(eval_splits={"validation": "test"}), "keep one of them"),
                      (dict(index_key="image_id", labels_per_class=0, index_file="f"),
                       "index_key='image_id' is not a feature"),
                      (dict(eval_splits={"test": "tset"}), "'tset'")):
    with pytest.raises(ValueError, match=match):
      sources.make_source(make_config(data_dir, **data))
  source = sources.make_source(make_config(data_dir))
  with pytest.raises(ValueError, match=r"Unknown split 'val'.*\['test', 'validation'\]"):
    next(source.eval_batches("val", 10))
  tf_data = make_config(data_dir, reader="tf_data")
  with pytest.raises(ValueError, match=r"augment=.shift.: unknown augment"):
    sources.make_source(tf_data)
  with pytest.raises(ValueError, match=r"reader='index'"):
    sources.make_source(make_config(data_dir, reader="index"))
  assert tfds_input.reader_of(tfds_input.spec_from_config(
      make_config(data_dir, reader="auto").data)) == "random_access"
