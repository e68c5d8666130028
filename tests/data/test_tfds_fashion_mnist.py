"""The fashion_mnist_debian builder: tiny idx files built offline, every content check named."""

import gzip
import logging
import os

import numpy as np
import pytest

from tgt_jax.data import tfds_fashion_mnist as fashion_mnist

TINY = fashion_mnist.Content(sizes={"train": 30, "test": 10})


def write_tiny(directory, sizes=TINY.sizes, seed=0):
  """Idx files of random 28×28 images, classes in turn: {split: (images, labels)}."""
  rng = np.random.default_rng(seed)
  out = {}
  for split, n in sizes.items():
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = np.arange(n) % 10
    images_file, labels_file = fashion_mnist.FILES[split]
    fashion_mnist.write_idx(os.path.join(directory, images_file), images)
    fashion_mnist.write_idx(os.path.join(directory, labels_file), labels)
    out[split] = images, labels
  return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  raw = tmp_path_factory.mktemp("idx")
  arrays = write_tiny(str(raw))
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  builder = fashion_mnist.prepare(data_dir, str(raw), content=TINY)
  return builder, arrays


def test_builds_tfds_fashion_mnists_features_as_array_record(tiny):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder, arrays = tiny
  info = builder.info
  assert info.file_format == tfds.core.FileFormat.ARRAY_RECORD
  assert info.features["image"].shape == (28, 28, 1)
  assert info.features["image"].np_dtype == np.uint8
  assert info.features["label"].names == list(fashion_mnist.CLASS_NAMES)
  assert {k: v.num_examples for k, v in info.splits.items()} == TINY.sizes
  for split, (images, labels) in arrays.items():
    source = builder.as_data_source(split)
    read = source.__getitems__(list(range(len(source))))
    # TFDS stores the examples in an order of its own: compare them as a set, exactly.
    got = sorted((ex["image"].tobytes(), int(ex["label"])) for ex in read)
    want = sorted((image[..., None].tobytes(), int(label)) for image, label in zip(images, labels))
    assert got == want


def _expect_error(tmp_path, match, sizes=TINY.sizes, damage=None, content=TINY):
  raw = tmp_path / "idx"
  raw.mkdir(parents=True)
  write_tiny(str(raw), sizes)
  if damage:
    damage(raw)
  with pytest.raises((fashion_mnist.ContentError, FileNotFoundError), match=match) as e:
    fashion_mnist.read_split(str(raw), "train", content)
  assert "\n" not in str(e.value)
  return str(e.value)


def _rewrite(path, header=None, data=None):
  with gzip.open(path) as f:
    raw = f.read()
  raw = (header if header is not None else raw[:16]) + (data if data is not None else raw[16:])
  with gzip.open(path, "wb") as f:
    f.write(raw)


def test_wrong_magic_count_shape_or_checksum_is_one_line_naming_the_file(tmp_path):
  images = "train-images-idx3-ubyte.gz"
  bad_magic = lambda raw: _rewrite(raw / images, header=b"\x00\x00\x08\x01" + (
      30).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2)
  _expect_error(tmp_path / "a", rf"{images}: idx magic number 2049.*expected 2051",
                damage=bad_magic)
  _expect_error(tmp_path / "b", rf"{images}: 30 examples, expected 60000",
                content=fashion_mnist.FASHION_MNIST)
  _expect_error(tmp_path / "c", rf"{images}: 23492 data bytes .* need 23520",
                damage=lambda raw: _rewrite(raw / images, data=bytes(30 * 28 * 28 - 28)))
  bad_size = lambda raw: _rewrite(raw / images, header=(2051).to_bytes(4, "big") + b"".join(
      v.to_bytes(4, "big") for v in (30, 14, 56)))
  _expect_error(tmp_path / "d", rf"{images}: idx dimensions \(30, 14, 56\)", damage=bad_size)
  sha = fashion_mnist.Content(TINY.sizes, {images: "0" * 64})
  _expect_error(tmp_path / "e", rf"{images}: sha256 .* expected 0000", content=sha)
  labels = "train-labels-idx1-ubyte.gz"
  skewed = lambda raw: fashion_mnist.write_idx(raw / labels, np.r_[np.zeros(12), np.arange(18) % 9])
  _expect_error(tmp_path / "f", rf"{labels}: examples per class \[14, 2,", damage=skewed)
  missing = lambda raw: os.remove(raw / labels)
  _expect_error(tmp_path / "g", rf"{labels} is missing.*apt-get install dataset-fashion-mnist",
                damage=missing)
  not_gzip = lambda raw: (raw / images).write_bytes(b"plain")
  _expect_error(tmp_path / "h", rf"{images} is not a readable gzip file", damage=not_gzip)


def test_a_missing_package_is_one_line_naming_path_and_package(tmp_path):
  where = str(tmp_path / "nowhere")
  with pytest.raises(FileNotFoundError, match=rf"{where} does not exist: apt-get install "
                     r"dataset-fashion-mnist, or set config.data.raw_dir"):
    fashion_mnist.prepare(str(tmp_path / "tfds"), where)


def test_prepared_once_then_kept(tmp_path, monkeypatch, caplog):
  raw = tmp_path / "idx"
  raw.mkdir()
  write_tiny(str(raw))
  monkeypatch.setattr(fashion_mnist, "FASHION_MNIST", TINY)    # what the job's call expects
  data_dir = str(tmp_path / "tfds")
  assert not fashion_mnist.is_prepared(data_dir)
  with caplog.at_level(logging.INFO):
    fashion_mnist.prepare_if_missing(data_dir, str(raw))
  assert fashion_mnist.is_prepared(data_dir)
  assert sum("is not in" in r.message and "preparing it" in r.message
             for r in caplog.records) == 1
  os.remove(raw / "train-images-idx3-ubyte.gz")     # a second call reads nothing
  fashion_mnist.prepare_if_missing(data_dir, str(raw))


@pytest.mark.skipif(not os.path.isdir(fashion_mnist.DEBIAN_DIR),
                    reason="the Debian package dataset-fashion-mnist is not installed")
def test_the_debian_files_are_fashion_mnist():
  """Every check on the real files (sha256 of the decompressed bytes included): ~1 s."""
  for split, size in fashion_mnist.FASHION_MNIST.sizes.items():
    images, labels = fashion_mnist.read_split(fashion_mnist.DEBIAN_DIR, split)
    assert images.shape == (size, 28, 28, 1) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [size // 10] * 10
