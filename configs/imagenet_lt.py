r"""TGT on ImageNet-LT (the paper's headline: about +10 points over the plain student).

ImageNet-LT (Liu et al. 2019) is TFDS's `imagenet_lt`: a long-tailed 115.8k-image
train split (1,280 to 5 images per class) built from the ImageNet manual download,
and balanced validation/test splits (20 / 50 per class). Everything else is
configs/imagenet.py: a ResNet-50 student, sd-vae-ft-mse (E, G) and BiT-M R152x2 (T)
from their published files (imagenet.py's docstring says where each is). Head / medium / tail in results.json are thirds of the classes
by training count (the paper's many/medium/few-shot split uses >100 / 20-100 / <20
images; both are computed from class_counts in results.json).

Another long tail of ImageNet (Places-LT style): name=imagenet2012 with
--config.data.imbalance=256 (per-class count rule), or --config.data.index_file=FILE
listing the examples (tgt_jax/data/tfds_subsets.py gives the format).

Pod command (every worker):
  CONFIG=configs/imagenet_lt.py WORKDIR=gs://BUCKET/tgt/imagenet_lt \
  EXTRA_FLAGS="--config.teacher.vae_dir=gs://BUCKET/sd-vae-ft-mse" bash launch/run.sh
Variants: :method=ce|kd|tgt_random|tgt_gradient|...; :job=teacher_report; :teacher=components;
:runlocal is the CPU smoke variant the tests run under tfds.testing.mock_data.
Offline x' (:job=synthesize, then a student with --config.tgt_cache.dir=DIR) need the
data read by index: prepared as ArrayRecord, with an in-step augment
(--config.data.augment=flip_shift); tests/e2e/test_imagenet_lt_cache.py runs :runlocal
so on a tiny copy that TFDS prepared.

Measured: only :runlocal (tests/e2e/test_configs.py); no full-size figures yet.
Expected cost: 90 epochs of 115.8k images are about 10k steps at batch 1024 — about
a tenth of the ImageNet job's.
"""

import os

from tgt_jax import configlib


def get_config(arg=None):
  here = os.path.dirname(os.path.abspath(__file__))
  config = configlib.load(os.path.join(here, "imagenet.py"), arg)
  config.data.name = "imagenet_lt"
  config.data.eval_splits = {"validation": "validation", "test": "test"}
  return config
