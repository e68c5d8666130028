"""data/tfds_subsets.py: index files (the subset a run trains on, by example id) read back
what was written, skip comments, and name a missing or empty file. Selecting from a real TFDS
split is tested in tests/data/test_tfds_input.py."""

import pytest

from tgt_jax.data import tfds_subsets


def test_an_index_file_reads_back_what_was_written(tmp_path):
  path = str(tmp_path / "subset.txt")
  ids = [b"ds-train.tfrecord-00000-of-00001__3", b"ds-train.tfrecord-00000-of-00001__0"]
  tfds_subsets.write_index_file(path, ids)
  assert tfds_subsets.read_index_file(path) == ids                  # file order kept


def test_comments_blank_lines_labels_and_duplicates_are_skipped(tmp_path):
  path = tmp_path / "ImageNet_LT_train.txt"
  path.write_text("# ImageNet-LT\n\ntrain/n01/a.JPEG 0\ntrain/n02/b.JPEG 1\n"
                  "train/n01/a.JPEG 0\n")
  assert tfds_subsets.read_index_file(str(path)) == [b"train/n01/a.JPEG", b"train/n02/b.JPEG"]


def test_a_missing_or_empty_index_file_is_named(tmp_path):
  with pytest.raises(FileNotFoundError, match=f"not found: {tmp_path}/none.txt"):
    tfds_subsets.read_index_file(str(tmp_path / "none.txt"))
  (tmp_path / "empty.txt").write_text("# nothing yet\n\n")
  with pytest.raises(ValueError, match="empty.txt lists no examples"):
    tfds_subsets.read_index_file(str(tmp_path / "empty.txt"))
