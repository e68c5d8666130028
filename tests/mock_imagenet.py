"""A tiny ImageNet-LT prepared as real TFDS ArrayRecord files, for tests of the reader by index.

Why not tfds.testing.mock_data: its data sources do not behave as prepared data do
(tensorflow-datasets 4.9.10: the mocked builder says tfrecord, `__getitems__` raises
TypeError, and `info.splits` has no file instructions for the tfds_id keys), so the
random-access reader (tgt_jax/data/tfds_random_access.py) could only run there on
patched TFDS internals. Here TFDS's own `imagenet_lt` builder class reads files
that TFDS wrote: the same version, features (image, a 1,000-class label named by
synset, file_name) and split names, with random JPEGs of varied sizes (as
ImageNet's are) and a long-tailed train split. A job opens it with
config.data.data_dir = the directory `prepare` wrote.
"""

import io

import numpy as np
import PIL.Image
import tensorflow_datasets as tfds
from etils import epath
from tensorflow_datasets.datasets.imagenet_lt import imagenet_lt_dataset_builder as published

# Train examples of each class, a long tail (ImageNet-LT: 1,280 down to 5), over classes
# spread across the 1,000; the validation and test splits are balanced over the same classes.
TRAIN_COUNTS = {0: 14, 125: 9, 250: 6, 375: 4, 500: 3, 625: 2, 750: 1, 875: 1}
EVAL_PER_CLASS = 2
SPLITS = ("train", "validation", "test")
SEED = 0


class TinyImagenetLt(published.Builder, skip_registration=True):
  """TFDS's imagenet_lt builder, generating random examples instead of reading the ImageNet
  tars (a manual download) and the subset lists (downloaded)."""
  name = "imagenet_lt"
  code_path = epath.Path(__file__)        # TFDS looks for checksums beside it: none
  pkg_dir_path = epath.Path(published.__file__).parent   # the published README and citation

  def _split_generators(self, dl_manager):
    del dl_manager        # nothing is downloaded
    balanced = {c: EVAL_PER_CLASS for c in TRAIN_COUNTS}
    return {"train": self._generate_examples(TRAIN_COUNTS, "train"),
            "validation": self._generate_examples(balanced, "validation"),
            "test": self._generate_examples(balanced, "test")}

  def _generate_examples(self, counts, split):  # pylint: disable=arguments-renamed
    rng = np.random.default_rng([SEED, SPLITS.index(split)])
    synsets = self.info.features["label"].names
    for label, count in counts.items():
      for i in range(count):
        height, width = rng.integers(32, 49, size=2)
        pixels = rng.integers(0, 256, (height, width, 3), np.uint8)
        jpeg = io.BytesIO()
        PIL.Image.fromarray(pixels).save(jpeg, format="JPEG")
        file_name = f"{synsets[label]}_{split}_{i}.JPEG"    # ImageNet's: n01440764_190.JPEG
        yield file_name, {"image": jpeg.getvalue(), "label": label, "file_name": file_name}


def prepare(data_dir):
  """Writes the dataset (ArrayRecord, as a copy prepared for reading by index) under data_dir."""
  builder = TinyImagenetLt(data_dir=str(data_dir), file_format="array_record")
  builder.download_and_prepare()
  return builder


def num_train_examples():
  return sum(TRAIN_COUNTS.values())
