r"""TGT on ImageNet: a ResNet-50 student and a teacher from published weight files.

The default teacher (teacher.kind=pretrained) is sd-vae-ft-mse as E and G and
big_vision's distillation teacher BiT-M R152x2 (224 px, 83.0% ImageNet top-1) as T:
  * E, G: the Hugging Face repository stabilityai/sd-vae-ft-mse, files config.json and
    diffusion_pytorch_model.safetensors; copy them to a local or gs:// directory and give
    it as --config.teacher.vae_dir (its -ema sibling, or a 16-channel AutoencoderKL with a
    shift_factor, load the same way). A 224 px image becomes a 28×28×4 latent.
  * T: gs://bit_models/distill/R152x2_T_224.npz (public bucket; the default path), or any
    BiT npz (e.g. gs://bit_models/BiT-M-R50x1-ILSVRC2012.npz), or a timm ResNet's
    model.safetensors with --config.teacher.labeler_format=timm
    --config.teacher.labeler_arch=resnet50 --config.teacher.labeler_file=PATH.
The teacher computes in bfloat16 (teacher.dtype); inputs are mapped to each part's
range and size. :teacher=components instead reads three directories of tgt_jax's part
format (the BigBiGAN-shaped modules, not weight-compatible with a released
checkpoint; tgt_jax/teachers/components.py). The student computes in bfloat16; SGD
(or LAMB) with warm-up and cosine decay, durations in epochs of the student's set.

Pod command (every worker; see README "Running on a TPU pod" and launch/):
  CONFIG=configs/imagenet.py WORKDIR=gs://BUCKET/tgt/imagenet \
  EXTRA_FLAGS="--config.teacher.vae_dir=gs://BUCKET/sd-vae-ft-mse" bash launch/run.sh
  i.e. python -m tgt_jax.main --config=configs/imagenet.py --workdir=gs://... --distributed
The teacher's figures first (no training; README "Using a pretrained teacher"):
  python -m tgt_jax.main --config=configs/imagenet.py:job=teacher_report \
    --config.teacher.vae_dir=DIR --workdir=/tmp/teacher_report
Variants: :method=ce|kd|kd_mixup|tgt_random|tgt_prior|tgt_gradient|tgt_gradient_input;
  --config.data.labels_per_class=10 (a few-shot subset of ImageNet); --config.optimizer.name=lamb;
  --config.teacher.labeler_resolution=0 (the labeler's published size).
  :runlocal is the CPU smoke variant (a tiny ResNet student at 32 px; the teacher from the
  repository's tiny random files in the published formats, tests/fixtures/pretrained/) that
  the tests run under tfds.testing.mock_data for ce, kd, tgt_random and tgt_gradient.
  :teacher=components,runlocal writes random-init parts instead.

:teacher=dit: a class-conditional diffusion teacher (teachers/diffusion.py): DiT-XL/2 at
256 px with its sd-vae-ft AutoencoderKL as E and G (x' = SDEdit from E(x) + σ·ε,
σ = tgt.sigma picking the start, 25 DDIM steps, guidance 1.5, under each example's label;
tgt_prior: from pure noise under uniform classes) and the BiT labeler above as T. Weights:
the Hugging Face repository facebook/DiT-XL-2-256 (transformer/, vae/, scheduler/); DiT's
code and weights are licensed CC-BY-NC 4.0: non-commercial use only. Copy the repository
to DIR, then
  python -m tgt_jax.main --config=configs/imagenet.py:teacher=dit,job=teacher_report \
    --config.teacher.dit_dir=DIR --workdir=/tmp/dit_report
  python -m tgt_jax.main --config=configs/imagenet.py:teacher=dit,method=tgt_prior \
    --config.teacher.dit_dir=DIR --workdir=gs://BUCKET/tgt/imagenet_dit
  (--config.teacher.ddim_steps=N, --config.teacher.guidance=G,
  --config.teacher.condition_on=labeler; the gradient methods are refused.)
  :teacher=dit,runlocal runs on the tiny fixtures (a 1,000-class DiT made for it).

Measured: only :runlocal (tests/e2e/test_configs.py); the loaders match diffusers and
timm at random initialisation (README "Using a pretrained teacher"). Nobody has run the
full job or the teacher report with the real weights: they cannot be fetched here. No
accuracy figures yet. The step's cost by part at these sizes (random weights, 2 CPU cores,
python -m benchmarks.imagenet_step; README "Cost at scale"): kd 113 GFLOPs per
image, tgt_random 901 (G 470, E 205: the student is 5% of it), tgt_gradient 2040, and
tgt_random from an offline cache (job=synthesize) 137.
"""

import os

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


FIXTURES = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                         "tests", "fixtures", "pretrained"))


def pretrained_teacher(runlocal):
  """A teacher from published files: a diffusers AutoencoderKL (E, G) and a BiT or timm labeler.

  The default is sd-vae-ft-mse (vae_dir: a local or gs:// copy of the Hugging Face repo
  stabilityai/sd-vae-ft-mse: config.json and diffusion_pytorch_model.safetensors) and
  big_vision's distillation teacher BiT-M R152x2 at 224 px, read from its public bucket
  (the VM needs read access to gs://bit_models). :runlocal uses the repository's tiny
  random fixtures in the same formats (tests/fixtures/make_pretrained_*.py).
  """
  t = ml_collections.ConfigDict()
  t.kind = "pretrained"
  t.vae_dir = ""                # required: the AutoencoderKL directory
  t.labeler_format = "bit"      # "bit" (a BiT npz, either layout) or "timm" (model.safetensors)
  t.labeler_file = "gs://bit_models/distill/R152x2_T_224.npz"
  t.labeler_arch = ""           # timm only: a plain ResNet name (resnet18..200, resnet26, ...),
                                # "resnet:basic|bottleneck:N,N,N,N", or "" for its config.json
  t.labeler_groups = 32         # BiT's GroupNorm groups (its published files: 32)
  t.labeler_resolution = 224    # px the labeler sees (0: its published size)
  # The stem pool's padding: "" by the file's layout; R152x2_T_224 was fine-tuned and
  # evaluated in big_vision, which pads with -inf (models/bit.py).
  t.labeler_pool_padding = "-inf"
  t.dtype = "bfloat16"          # the teacher's compute dtype; parameters stay float32
  t.dir = ""                    # unused (kept for the common checks)
  t.train_if_missing = False
  if runlocal:
    t.vae_dir = os.path.join(FIXTURES, "autoencoder_kl")
    t.labeler_file = os.path.join(FIXTURES, "bit", "tiny_bit_big_vision_1000.npz")
    t.labeler_groups = 4
    t.labeler_resolution = 32
    t.labeler_pool_padding = ""
  return t


def dit_teacher(runlocal):
  """A class-conditional DiT with its AutoencoderKL as E and G, the pretrained kind's labeler
  as T (teachers/diffusion.py). teacher.dit_dir is a local or gs:// copy of the Hugging Face
  repository facebook/DiT-XL-2-256 (transformer/, vae/, scheduler/; CC-BY-NC 4.0).
  :runlocal reads the tiny random fixtures: a 1,000-class DiT on 8×8×4 latents, the
  AutoencoderKL fixture (×2 downsampling, 4 latent channels: 16 px) and the DiT fixture's
  scheduler; the 32 px student's images are resized to 16 px and back, as 224 ↔ 256 at scale.
  """
  t = pretrained_teacher(runlocal)          # the labeler's settings are the pretrained kind's
  t.kind = "diffusion"
  t.dit_dir = ""                # required: DiT-XL-2-256's transformer/, vae/ and scheduler/
  t.transformer_dir = ""        # each, when set, replaces dit_dir's sub-directory
  t.vae_dir = ""
  t.scheduler_dir = ""
  t.ddim_steps = 25             # DDIM steps of the full schedule; tgt.sigma picks where to start
  t.guidance = 1.5              # classifier-free guidance (1: none, no doubled batch)
  t.condition_on = "label"      # "label" (the real y) or "labeler" (argmax T(x)), tgt_random
  if runlocal:
    t.transformer_dir = os.path.join(FIXTURES, "dit_imagenet")
    t.vae_dir = os.path.join(FIXTURES, "autoencoder_kl")
    t.scheduler_dir = os.path.join(FIXTURES, "dit")
    t.ddim_steps = 4
  return t


TEACHERS = {"pretrained": pretrained_teacher, "components": imagenet_teacher, "dit": dit_teacher}


def get_config(arg=None):
  arg = configlib.parse_arg(arg, runlocal=False, method="tgt_random", teacher="pretrained",
                            job="student")
  config = ml_collections.ConfigDict()
  config.job = arg.job                        # student | teacher_report
  config.seed = 0
  config.data = ml_collections.ConfigDict(dict(
      name="imagenet2012", data_dir="", train_split="train",
      eval_splits={"validation": "validation"},
      image_size=224, channels=3, pixel_range=(-1.0, 1.0),   # the generator's output range
      augment="inception_crop_flip", crop_fraction=0.875,
      shuffle_buffer=10_000, cache=False,      # host-RAM-safe: bounded buffer, no raw cache
      labels_per_class=0, imbalance=0.0, head_count=0, index_file="",
      reader="auto"))                        # tf_data | random_access | auto (by file format)
  config.student = ml_collections.ConfigDict(dict(model="resnet50", dtype="bfloat16"))
  if arg.teacher not in TEACHERS:
    raise ValueError(f"teacher={arg.teacher!r}: choose one of {sorted(TEACHERS)}.")
  config.teacher = TEACHERS[arg.teacher](arg.runlocal)
  config.method = arg.method
  config.tgt = configlib.tgt_defaults()
  config.tgt.sigma = 0.5
  # Offline x' (job=synthesize writes WORKDIR/synthetic; a student reads it with
  # --config.tgt_cache.dir): needs the data read by index (data.reader, ArrayRecord) and an
  # in-step augment (--config.data.augment=flip_shift; inception_crop_flip is tf.data's).
  config.tgt_cache = configlib.cache_defaults()
  config.batch_size = 1024
  config.eval_batch_size = 1024
  config.num_epochs = 90                      # → num_train_steps at start (engine/state.py)
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
  config.report_split = ""                    # job=teacher_report: "" = the first eval split
  config.report_examples = 10_000             # its first N examples (0: all)
  if arg.runlocal:
    config.data.update(dict(image_size=32, shuffle_buffer=64))
    config.student = ml_collections.ConfigDict(dict(model="resnet_tiny", dtype="bfloat16"))
    config.batch_size = config.eval_batch_size = 16
    config.num_epochs = 0
    config.num_train_steps = 3
    config.optimizer.warmup_epochs = 0
    config.optimizer.warmup_steps = 1
    config.log_every = config.eval_every = config.checkpoint_every = 3
    config.report_examples = 32
  return config
