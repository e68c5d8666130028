"""tasks/classification.py's checks of a config's splits, before any work, on every config.

TFDS's mock data (which the config tests run under) serves any split name, so a split
the real dataset lacks is caught here, against the splits each builder really makes.
"""

import glob
import os

import pytest

from tgt_jax import configlib
from tgt_jax.data import sources
from tgt_jax.tasks import classification

CONFIGS = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "..", "configs",
                                        "*.py")))
# The splits each TFDS builder generates (its _split_generators; fashion_mnist_debian is
# data/tfds_fashion_mnist.py's). A config of another TFDS dataset must be added here.
TFDS_SPLITS = {"cifar10": {"train", "test"}, "fashion_mnist_debian": {"train", "test"},
               "imagenet2012": {"train", "validation", "test"},
               "imagenet_lt": {"train", "validation", "test"}}


VARIANTS = [pytest.param(path, arg, id=f"{os.path.basename(path)}:{arg}")
            for path in CONFIGS for arg in ("", "runlocal")]


def _split_names(spec):
  """'train[:90%]+test' → ['train', 'test']."""
  return [part.split("[")[0].strip() for part in spec.split("+")]


@pytest.mark.parametrize("path,arg", VARIANTS)
def test_every_config_reads_only_splits_its_dataset_has(path, arg):
  config = configlib.load(path, arg)
  name = config.data.name
  if name in sources.IN_MEMORY:
    return                     # digits and WordNet cut their own fixed splits
  assert name in TFDS_SPLITS, f"{os.path.basename(path)}: add {name!r}'s splits to TFDS_SPLITS"
  specs = [config.data.get("train_split", "train"), *config.data.eval_splits.values()]
  unknown = [s for spec in specs for s in _split_names(spec) if s not in TFDS_SPLITS[name]]
  assert unknown == [], f"{os.path.basename(path)}:{arg} reads {unknown} of {name!r}"
  if config.get("job", "student") == "student":
    classification.check_validation_split(config)


def test_a_tfds_student_without_a_validation_split_is_refused_by_name():
  path = next(p for p in CONFIGS if p.endswith("cifar10.py"))
  config = configlib.load(path, "runlocal", **{"data.eval_splits": {"test": "test"}})
  with pytest.raises(ValueError, match=r"eval_every=2 evaluates the student on 'validation', "
                                       r"which config.data.eval_splits \['test'\] does not"):
    classification.validate(config)
  config.eval_every = 0                  # no curve: nothing reads 'validation'
  classification.check_validation_split(config)
  config.eval_every = 2
  config.data.validation_size = 100      # ArrayRecord: a validation part cut from train
  classification.check_validation_split(config)
