r"""TGT student on CIFAR-10 with few labels; teacher and student trained by tgt_jax (like digits).

The teacher (a conv VAE for E and G, a ResNet-18 labeler) trains on the 45k-image
train part (TFDS's cifar10 has only train and test: validation is the last 10% of
train, 5k images), then the student (the small CNN) sees 25 labelled images per class
and explores around them. Data come from TFDS (tf.data, one part per process);
prepare them once with launch/prepare_data.sh (DATASETS=cifar10) or let TFDS find
them in $TFDS_DATA_DIR. Nothing is downloaded at run time.

Commands:
  python -m tgt_jax.main --config=configs/cifar10.py:job=teacher --workdir=WORKDIR
  python -m tgt_jax.main --config=configs/cifar10.py --workdir=WORKDIR   # trains the teacher
      into WORKDIR/teacher first if it is missing
  Variants: :method=ce|kd|kd_mixup|tgt_random|tgt_prior|tgt_gradient|tgt_gradient_input,
  --config.data.labels_per_class=0 --config.data.imbalance=100 (CIFAR-10-LT).
  On a pod: launch/run.sh with CONFIG=configs/cifar10.py (see README, "Running on a TPU pod").
  :runlocal is the CPU smoke variant the tests run under tfds.testing.mock_data.

Measured: only :runlocal, under mock data, in the tests (tests/e2e/test_configs.py); the
full-size run has not been run by us, so there are no accuracy figures for it yet.
Expected cost: the teacher is 20k + 20k steps at batch 128 and the student 20k
steps, each well under an hour on one TPU v4 chip or GPU.
"""

import ml_collections

from tgt_jax import configlib


def get_config(arg=None):
  arg = configlib.parse_arg(arg, runlocal=False, method="tgt_random", job="student")
  config = ml_collections.ConfigDict()
  config.job = arg.job
  config.seed = 0
  config.data = ml_collections.ConfigDict(dict(
      name="cifar10", data_dir="",
      train_split="train[:90%]",                                   # 45,000 images
      eval_splits={"test": "test", "validation": "train[90%:]"},   # the student's curve
      image_size=32, channels=3, pixel_range=(0.0, 1.0),
      augment="crop_flip",             # tf.data: pad 4, random 32×32 crop, flip
      shuffle_buffer=10_000, cache=True,   # 45k small images: caching encoded bytes is cheap
      labels_per_class=25, imbalance=0.0, head_count=0, index_file=""))
  config.student = ml_collections.ConfigDict(dict(model="cnn_small"))
  config.teacher = configlib.digits_teacher(arg.runlocal)
  config.teacher.update(dict(latent_dim=64, labeler="resnet18_cifar", generator_steps=20_000,
                             labeler_steps=20_000, batch_size=128, kl_warmup_steps=2_000))
  config.method = arg.method
  config.tgt = configlib.tgt_defaults()
  config.batch_size = 128
  config.eval_batch_size = 256
  config.num_train_steps = 20_000
  config.optimizer = configlib.digits_optimizer()
  config.optimizer.warmup_steps = 500
  config.log_every = 200
  config.eval_every = 2_000
  config.checkpoint_every = 2_000
  config.keep_checkpoints = 3
  config.grid_examples = 16
  config.eval_only = False
  config.eval_step = 0
  if arg.runlocal:
    config.data.update(dict(cache=False, labels_per_class=0, shuffle_buffer=64))
    config.teacher.update(dict(labeler="cnn_small", generator_steps=2, labeler_steps=2,
                               batch_size=16, kl_warmup_steps=1))
    config.batch_size = config.eval_batch_size = 16
    config.num_train_steps = 4
    config.log_every = config.eval_every = config.checkpoint_every = 2
  return config
