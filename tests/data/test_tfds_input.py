"""TFDS input pipelines on mock data and on a tiny prepared dataset, offline.

tfds.testing.mock_data (USE_CODE: no metadata needed) serves cifar10, imagenet2012,
imagenet_lt and places365_small for shapes and ranges, but it ignores split
slicing (every even_splits part yields the same examples) and knows no split
sizes. Sharding, padding and subsets are therefore tested on a tiny dataset
prepared on disk by a builder defined here, then read back by name from its
data_dir like any prepared TFDS dataset.
"""

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from tgt_jax.data import tfds_input, tfds_subsets

TRAIN, TEST, CLASSES = 40, 11, 4


class TgtTinyImages(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """40 train (10 per class) and 11 test png images of varying size, 4 classes."""
  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(None, None, 3)),
        "label": tfds.features.ClassLabel(num_classes=CLASSES)}))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples(TRAIN, 0), "test": self._generate_examples(TEST, 1)}

  def _generate_examples(self, n, seed):
    rng = np.random.default_rng(seed)
    for i in range(n):
      shape = (20, 24, 3) if i % 2 else (26, 18, 3)
      yield i, {"image": rng.integers(0, 256, shape, dtype=np.uint8), "label": i % CLASSES}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  TgtTinyImages(data_dir=data_dir).download_and_prepare()
  return data_dir


def tiny_spec(tiny_dir, **overrides):
  config = dict(name="tgt_tiny_images", data_dir=tiny_dir, eval_splits={"test": "test"},
                image_size=16, augment="crop_flip", pixel_range=(0.0, 1.0), shuffle_buffer=64)
  return tfds_input.spec_from_config({**config, **overrides})


def ids_of(ds):
  return [ex["tfds_id"] for ex in tfds.as_numpy(ds)]


@pytest.mark.parametrize("name,augment,pixel_range,num_classes", [
    ("cifar10", "crop_flip", (0.0, 1.0), 10),
    ("imagenet2012", "inception_crop_flip", (-1.0, 1.0), 1000),
    ("imagenet_lt", "flip", (-1.0, 1.0), 1000),
    ("places365_small", "none", (0.0, 1.0), 365),
])
def test_mock_train_batches(name, augment, pixel_range, num_classes):
  spec = tfds_input.spec_from_config(dict(name=name, image_size=32, augment=augment,
                                          pixel_range=pixel_range, crop_fraction=0.875,
                                          eval_splits={"v": "train"}))
  with tfds.testing.mock_data(num_examples=20, policy=tfds.testing.MockPolicy.USE_CODE):
    meta = tfds_input.info(spec)
    batches = tfds_input.train_batches(spec, 8, seed=0, process_index=0, process_count=1)
    for _ in range(3):  # 24 > 20 examples: crosses the repeat
      batch = next(batches)
      assert batch["image"].shape == (8, 32, 32, 3) and batch["image"].dtype == np.float32
      assert batch["label"].shape == (8,) and batch["label"].dtype == np.int32
      assert pixel_range[0] <= batch["image"].min() < batch["image"].max() <= pixel_range[1]
      assert 0 <= batch["label"].min() and batch["label"].max() < num_classes
    evals = list(tfds_input.eval_batches(spec, "v", 8))
  assert meta.num_classes == num_classes and meta.image_shape == (32, 32, 3)
  assert len(evals) == 3 and sum(b["mask"].sum() for b in evals) == 20


def test_info(tiny_dir):
  config = ml_collections.ConfigDict(dict(
      name="tgt_tiny_images", data_dir=tiny_dir, eval_splits={"test": "test"}, image_size=16,
      pixel_range=(0, 1), labels_per_class=0, imbalance=0.0, head_count=0))
  meta = tfds_input.info(tfds_input.spec_from_config(config))
  assert meta.num_classes == CLASSES
  assert meta.split_sizes == {"train": TRAIN, "test": TEST}
  assert meta.image_shape == (16, 16, 3) and meta.pixel_range == (0.0, 1.0)


def test_process_parts_are_disjoint_and_cover_the_split(tiny_dir):
  spec = tiny_spec(tiny_dir)
  parts = [ids_of(tfds_input.read_part(spec, "train", i, 2)) for i in range(2)]
  whole = ids_of(tfds_input.read_part(spec, "train", 0, 1))
  assert len(whole) == len(set(whole)) == TRAIN
  assert not set(parts[0]) & set(parts[1])
  assert sorted(parts[0] + parts[1]) == sorted(whole)


def test_eval_batches_same_count_on_every_process_and_masks_cover_split(tiny_dir):
  spec = tiny_spec(tiny_dir)
  per_process = [list(tfds_input.eval_batches(spec, "test", 6, i, 2, with_ids=True))
                 for i in range(2)]  # parts of 6 and 5 examples, local batch 3
  assert [len(b) for b in per_process] == [2, 2]
  ids = [i for batches in per_process for b in batches for i in b["tfds_id"][b["mask"]]]
  assert len(ids) == len(set(ids)) == TEST
  assert sorted(ids) == sorted(ids_of(tfds_input.read_part(spec, "test", 0, 1)))
  batch = per_process[1][-1]
  assert batch["image"].shape == (3, 16, 16, 3) and batch["mask"].tolist() == [True, True, False]
  assert (batch["image"][2] == 0).all() and batch["label"][2] == 0


def subset_union(spec, ids, process_count):
  return sorted(i for p in range(process_count)
                for i in ids_of(tfds_input.read_part(spec, "train", p, process_count, ids)))


def test_long_tail_subset_by_count_rule(tiny_dir, tmp_path):
  spec = tiny_spec(tiny_dir, imbalance=5.0, head_count=10)
  ids, counts = tfds_input.select_subset(spec, seed=3)
  assert counts.tolist() == [10, 6, 3, 2]  # round(10 · 5^(-c/3))
  labels, keys = tfds_subsets.labels_and_keys(tfds_input.builder(spec), "train")
  assert np.bincount(labels[np.isin(keys, ids)], minlength=CLASSES).tolist() == [10, 6, 3, 2]
  assert subset_union(spec, ids, 1) == subset_union(spec, ids, 2) == sorted(ids)
  path = str(tmp_path / "lt.txt")
  tfds_subsets.write_index_file(path, ids)
  listed, listed_counts = tfds_input.select_subset(tiny_spec(tiny_dir, index_file=path), seed=9)
  assert listed.tolist() == ids.tolist() and listed_counts.tolist() == counts.tolist()
  again, _ = tfds_input.select_subset(spec, seed=3)
  other, _ = tfds_input.select_subset(spec, seed=4)
  assert again.tolist() == ids.tolist() and other.tolist() != ids.tolist()
  few_ids, few = tfds_input.select_subset(tiny_spec(tiny_dir, labels_per_class=2), seed=0)
  assert few.tolist() == [2] * CLASSES and len(few_ids) == 2 * CLASSES
  whole_ids, whole = tfds_input.select_subset(tiny_spec(tiny_dir), seed=0)
  assert whole_ids is None and whole.tolist() == [10] * CLASSES


def test_index_file_subset_keeps_exactly_the_listed_examples(tiny_dir, tmp_path):
  spec = tiny_spec(tiny_dir)
  listed = ids_of(tfds_input.read_part(spec, "train", 0, 1))[3:30:4]
  path = tmp_path / "subset.txt"
  path.write_text("# tfds_id label\n" + "".join(f"{i.decode()} 7\n" for i in listed) + "\n")
  spec = tiny_spec(tiny_dir, index_file=str(path))
  ids, counts = tfds_input.select_subset(spec, seed=0)
  assert sorted(ids) == sorted(listed) and counts.sum() == len(listed)
  assert subset_union(spec, ids, 2) == sorted(listed)
  batch = next(tfds_input.train_batches(spec, 16, seed=0, subset_ids=ids, process_index=0,
                                        process_count=1, with_ids=True))
  assert set(batch["tfds_id"]) <= set(listed)
  missing = tiny_spec(tiny_dir, index_file=str(tmp_path / "nope.txt"))
  with pytest.raises(FileNotFoundError, match="nope.txt"):
    tfds_input.select_subset(missing, seed=0)


def test_train_stream_is_a_function_of_seed_and_start_step(tiny_dir):
  spec = tiny_spec(tiny_dir, augment="inception_crop_flip")

  def first(seed, start_step, index=0):
    return next(tfds_input.train_batches(spec, 8, seed, start_step, process_index=index,
                                         process_count=2, with_ids=True))

  a, b = first(0, 0), first(0, 0)
  assert all(np.array_equal(a[k], b[k]) for k in a)
  assert not np.array_equal(a["image"], first(0, 5)["image"])
  assert not np.array_equal(a["image"], first(1, 0)["image"])
  assert not set(a["tfds_id"]) & set(first(0, 0, index=1)["tfds_id"])


def test_bad_inputs_name_the_value(tiny_dir):
  with pytest.raises(ValueError, match="'rotate'"):
    tiny_spec(tiny_dir, augment="rotate")
  with pytest.raises(ValueError, match="image_size"):
    tiny_spec(tiny_dir, image_size=0)
  with pytest.raises(ValueError, match="shuffle_bufer"):
    tiny_spec(tiny_dir, shuffle_bufer=10)
  spec = tiny_spec(tiny_dir)
  with pytest.raises(ValueError, match=r"10.*\(4\)"):
    tfds_input.train_batches(spec, 10, seed=0, process_index=0, process_count=4)
  with pytest.raises(ValueError, match="'validation'.*'test', 'train'"):
    list(tfds_input.eval_batches(spec, "validation", 4))
  with pytest.raises(ValueError, match="'tain'"):
    tfds_input.train_batches(tiny_spec(tiny_dir, train_split="tain"), 4, seed=0)
  with pytest.raises(ValueError, match="index_key='label_name'"):
    tfds_input.select_subset(tiny_spec(tiny_dir, index_key="label_name", labels_per_class=1), 0)
