r"""TGT on ImageNet: a ResNet-50 student and a BigBiGAN-shaped teacher loaded from checkpoints.

The teacher's encoder E (image → 120-d latent), generator G (latent → 128×128 image
in [-1, 1]) and labeler T come from three directories given in config.teacher
(tgt_jax/teachers/components.py describes the format; convert your BigBiGAN and
classifier weights into it once — nothing is downloaded). G's output is resized to
the student's 224 px, and inputs are resized to what E and T expect. The student
computes in bfloat16; SGD (or LAMB) with warm-up and cosine decay, durations in
epochs of the student's training set.

Pod command (every worker; see README "Running on a TPU pod" and launch/):
  CONFIG=configs/imagenet.py WORKDIR=gs://BUCKET/tgt/imagenet \
  EXTRA_FLAGS="--config.teacher.encoder_dir=gs://BUCKET/teacher/encoder \
  --config.teacher.generator_dir=gs://BUCKET/teacher/generator \
  --config.teacher.labeler_dir=gs://BUCKET/teacher/labeler" bash launch/run.sh
  i.e. python -m tgt_jax.main --config=configs/imagenet.py --workdir=gs://... --distributed
Variants: :method=ce|kd|kd_mixup|tgt_random|tgt_prior|tgt_gradient|tgt_gradient_input;
  --config.data.labels_per_class=10 (a few-shot subset of ImageNet); --config.optimizer.name=lamb.
  :runlocal is the CPU smoke variant (tiny models at 32 px, random-init teacher parts)
  that the tests run under tfds.testing.mock_data.
  :teacher=pretrained takes E and G from a diffusers AutoencoderKL and T from a BiT .npz or
  a timm model.safetensors (README "Using a pretrained teacher"):
  --config.teacher.vae_dir=DIR --config.teacher.labeler_file=BiT-M-R50x1-ILSVRC2012.npz
  (or --config.teacher.labeler_format=timm --config.teacher.labeler_arch=resnet50
  --config.teacher.labeler_file=.../model.safetensors).

Measured: only :runlocal (tests/e2e/test_configs.py); the pretrained teacher only on tiny
fixtures (tests/e2e/test_configs.py, with cifar10's 10 classes). We have not run the full job;
expected cost, from the student's ResNet-50 FLOPs (4.1 GFLOPs forward at 224 px)
and TGT-random's extra teacher passes: about 3× a plain ResNet-50 epoch per epoch,
so 90 epochs is in the order of a day on a v4-32 slice. No accuracy figures yet.
"""

import ml_collections

from tgt_jax import configlib


def imagenet_teacher(runlocal):
  """The three parts of the BigBiGAN-shaped teacher, each a directory (local or gs://)."""
  t = ml_collections.ConfigDict()
  t.kind = "components"
  t.encoder_dir = ""            # required: E, e.g. gs://BUCKET/teacher/encoder
  t.generator_dir = ""          # required: G
  t.labeler_dir = ""            # required: T
  t.latent_dim = 120
  # Smoke runs only: write random-init parts where the dirs are empty or missing.
  t.random_init_if_missing = bool(runlocal)
  t.encoder = "bigbigan_encoder_tiny" if runlocal else "bigbigan_encoder"
  t.generator = "bigbigan_generator_tiny" if runlocal else "bigbigan_generator"
  t.labeler = "resnet_tiny" if runlocal else "resnet50"
  t.dir = ""                    # unused by component teachers (kept for the common checks)
  t.train_if_missing = False
  return t


def pretrained_teacher():
  """A teacher from published files: a diffusers AutoencoderKL (E, G) and a BiT or timm labeler.

  For example vae_dir = a local or gs:// copy of an sd-vae-ft-mse directory (config.json and
  diffusion_pytorch_model.safetensors), labeler_file = BiT-M-R50x1-ILSVRC2012.npz.
  """
  t = ml_collections.ConfigDict()
  t.kind = "pretrained"
  t.vae_dir = ""                # required: the AutoencoderKL directory
  t.labeler_format = "bit"      # "bit" (an official .npz) or "timm" (model.safetensors)
  t.labeler_file = ""           # required
  t.labeler_arch = ""           # timm only: resnet18/34/50/101/152
  t.labeler_groups = 32         # BiT's GroupNorm groups (its published files: 32)
  t.dtype = "bfloat16"          # the teacher's compute dtype; parameters stay float32
  t.dir = ""                    # unused (kept for the common checks)
  t.train_if_missing = False
  return t


def get_config(arg=None):
  arg = configlib.parse_arg(arg, runlocal=False, method="tgt_random", teacher="components")
  config = ml_collections.ConfigDict()
  config.job = "student"
  config.seed = 0
  config.data = ml_collections.ConfigDict(dict(
      name="imagenet2012", data_dir="", train_split="train",
      eval_splits={"validation": "validation"},
      image_size=224, channels=3, pixel_range=(-1.0, 1.0),   # the generator's output range
      augment="inception_crop_flip", crop_fraction=0.875,
      shuffle_buffer=10_000, cache=False,      # host-RAM-safe: bounded buffer, no raw cache
      labels_per_class=0, imbalance=0.0, head_count=0, index_file=""))
  config.student = ml_collections.ConfigDict(dict(model="resnet50", dtype="bfloat16"))
  if arg.teacher not in ("components", "pretrained"):
    raise ValueError(f"teacher={arg.teacher!r}: choose 'components' or 'pretrained'.")
  config.teacher = pretrained_teacher() if arg.teacher == "pretrained" else imagenet_teacher(
      arg.runlocal)
  config.method = arg.method
  config.tgt = configlib.tgt_defaults()
  config.tgt.sigma = 0.5
  config.batch_size = 1024
  config.eval_batch_size = 1024
  config.num_epochs = 90                      # → num_train_steps at start (train.py)
  config.num_train_steps = 0
  config.optimizer = ml_collections.ConfigDict(dict(
      name="sgd", learning_rate=0.4, warmup_epochs=5, warmup_steps=0, weight_decay=1e-4))
  config.log_every = 100
  config.eval_every = 5_000
  config.checkpoint_every = 2_000
  config.keep_checkpoints = 3
  config.grid_examples = 8
  config.eval_only = False
  config.eval_step = 0
  if arg.runlocal:
    config.data.update(dict(image_size=32, shuffle_buffer=64))
    config.student = ml_collections.ConfigDict(dict(model="resnet_tiny", dtype="bfloat16"))
    config.batch_size = config.eval_batch_size = 16
    config.num_epochs = 0
    config.num_train_steps = 3
    config.optimizer.warmup_epochs = 0
    config.optimizer.warmup_steps = 1
    config.log_every = config.eval_every = config.checkpoint_every = 3
  return config
