"""configs/imagenet_lt.py:runlocal with the synthesis cache, on data read by index.

Mock data, but not tfds.testing.mock_data: tests/mock_imagenet.py has TFDS prepare a
tiny ImageNet-LT (random JPEGs, fixed seed) as ArrayRecord, and TFDS's own imagenet_lt
builder opens it, so the random-access reader runs unchanged on files TFDS wrote.
Patching mock_data instead would mean faking three TFDS internals (the file format, the
data source's __getitems__, the splits' file instructions behind tfds_id) and testing
the reader against that imitation of TFDS rather than TFDS.
"""

import json
import os

import numpy as np
import pytest

import mock_imagenet
from tgt_jax import configlib, jobs
from tgt_jax.data import synthetic_cache
from tgt_jax.tasks import synthesize

CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "imagenet_lt.py")
SAMPLES = 2


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  directory = tmp_path_factory.mktemp("imagenet_lt_tfds")
  mock_imagenet.prepare(directory)
  return str(directory)


def lt_config(arg, data_dir, **overrides):
  """The config on the tiny copy; its default augment (inception_crop_flip) is a tf.data
  recipe, and data read by index are augmented in the step: flip_shift, as a user sets."""
  return configlib.load(CONFIG, arg, **{"data.data_dir": data_dir, "data.augment": "flip_shift",
                                        **overrides})


@pytest.mark.slow   # 89 s loaded with a warm compile cache; the default run keeps Fashion-MNIST's
def test_runlocal_synthesize_then_a_student_that_reads_the_cache(tmp_path, data_dir):
  """job=synthesize writes SAMPLES x' for each example of the (long-tailed) train split,
  the config's labelled subset; a student reads them by its rows' indices and records the
  cache it read; a student with another seed is refused the cache (it was made with seed 0)."""
  made = jobs.run(lt_config("runlocal,job=synthesize", data_dir,
                            **{"tgt_cache.samples_per_example": SAMPLES}), str(tmp_path / "make"))
  labelled = mock_imagenet.num_train_examples()
  assert made["num_examples"] == labelled and made["num_records"] == labelled * SAMPLES
  manifest = synthetic_cache.read_manifest(made["cache_dir"])
  assert manifest["num_examples"] * manifest["samples_per_example"] == labelled * SAMPLES
  assert manifest["settings"]["data"]["name"] == "imagenet_lt"
  reader = synthetic_cache.Reader(made["cache_dir"])     # records found by (example, sample)
  got = reader.read([labelled - 1, 0], [SAMPLES - 1, 0])
  reader.close()
  assert got["example_id"].tolist() == [labelled - 1, 0] and got["sample_id"].tolist() == [1, 0]
  assert got["synthetic_image"].shape == (2, 32, 32, 3)
  assert got["synthetic_teacher_logits"].shape == (2, 1000)
  assert np.all(np.isfinite(got["synthetic_teacher_logits"]))

  cached = {"tgt_cache.dir": made["cache_dir"]}
  results = jobs.run(lt_config("runlocal", data_dir, **cached), str(tmp_path / "student"))
  assert results["checkpoint_step"] == results["num_train_steps"] == 3
  assert results["data"]["name"] == "imagenet_lt" and results["data"]["num_labelled"] == labelled
  counts = results["data"]["class_counts"]
  assert {c: counts[c] for c in mock_imagenet.TRAIN_COUNTS} == mock_imagenet.TRAIN_COUNTS
  assert 0.0 <= results["test_accuracy"] <= 1.0 and set(results) >= {"validation", "test"}
  identity = json.loads((tmp_path / "student" / "teacher_identity.json").read_text())["identity"]
  assert identity["synthetic_cache"] == synthesize.cache_fingerprint(manifest)
  assert "teacher_params.labeler" in identity       # T(x) of the real batch stays online

  with pytest.raises(ValueError, match="other settings: seed: cache 0, this run 1"):
    jobs.run(lt_config("runlocal", data_dir, seed=1, **cached), str(tmp_path / "other_seed"))
