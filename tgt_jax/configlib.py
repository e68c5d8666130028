"""Building blocks of the configs in configs/, and parsing of their string argument.

They live in the package (not in configs/) so that a config file loads the same
way from any working directory.
"""

import ml_collections


def parse_arg(arg, **defaults):
  """'runlocal,method=kd' → ConfigDict(runlocal=True, method='kd', ...) (big_vision style).

  Values take the type of their default; unknown keys are an error naming them.
  """
  out = ml_collections.ConfigDict(defaults)
  for item in filter(None, (arg or "").split(",")):
    key, sep, value = item.partition("=")
    if key not in defaults:
      raise ValueError(f"Unknown config argument {key!r} in {arg!r}; known: {sorted(defaults)}.")
    default = defaults[key]
    if not sep:
      value = True
    elif isinstance(default, bool):
      value = value.lower() in ("1", "true", "yes")
    else:
      value = type(default)(value)
    out[key] = value
  return out


def digits_teacher(runlocal=False):
  """The digits teacher: a conv VAE (E, G) and a CNN labeler (T), trained by tgt_jax.

  A fixed-variance Gaussian likelihood (σ=0.1), β=1 after a short KL warm-up and a
  16-d latent keep every latent dimension active (docs/design.md, "Teachers").
  """
  t = ml_collections.ConfigDict()
  t.dir = ""                      # "" → WORKDIR/teacher
  t.train_if_missing = True
  t.generator = "conv_vae"
  t.labeler = "cnn_labeler"
  t.latent_dim = 16
  t.pixel_sigma = 0.1
  t.beta = 1.0
  t.kl_warmup_steps = 500
  t.generator_steps = 4000
  t.labeler_steps = 2000
  t.batch_size = 64
  t.learning_rate = 1e-3
  t.seed = 0
  t.dtype = ""                    # compute dtype in the student's step ('' float32, bfloat16);
                                  # it is trained in float32 either way
  t.log_every = 500               # steps between a part's progress lines
  t.checkpoint_every = 1000       # steps between a part's checkpoints (resumable)
  if runlocal:
    t.generator_steps, t.labeler_steps, t.kl_warmup_steps = 40, 40, 10
  return t


def latent_diffusion_teacher(runlocal=False, grid=4):
  """teacher.kind='latent_diffusion' over a trained teacher (teachers/latent_diffusion.py): a
  DiT trained here in its VAE's latent, a grid×grid grid of latent_dim/grid² channels (Fashion's
  32-d latent: 4×4×2, 16 tokens), sampled with DDIM under classifier-free guidance."""
  t = ml_collections.ConfigDict()
  t.kind = "latent_diffusion"
  t.diffusion_dir = ""            # "" → WORKDIR/diffusion
  t.ddim_steps = 25               # of the 1,000-step schedule, as DiT samples
  t.guidance = 2.0                # classifier-free guidance scale (1: none)
  t.condition_on = "label"        # tgt_random's class: the real y ("labeler": argmax T(x))
  t.diffusion = ml_collections.ConfigDict(dict(
      grid=grid, heads=4, head_dim=32, layers=6,      # width 128
      steps=5_000, batch_size=256, learning_rate=1e-3, class_dropout=0.1,
      stats_batches=20, num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02,
      eval_every=1000, report_per_class=100))
  if runlocal:
    t.ddim_steps = 4
    t.diffusion.update(dict(layers=1, heads=2, head_dim=16, steps=4, batch_size=32,
                            stats_batches=2, eval_every=0, report_per_class=2))
  return t


def digits_optimizer():
  """The digits student's optimizer (shared by configs/digits.py and benchmarks)."""
  return ml_collections.ConfigDict(dict(name="adam", learning_rate=3e-3, warmup_steps=100,
                                        weight_decay=0.0))


def tgt_defaults():
  """The TGT step's hyper-parameters (see tgt.TGTConfig; the method is config.method)."""
  return ml_collections.ConfigDict(dict(
      sigma=1.0, eta=1.0, steps=1, epsilon=float("inf"), num_samples=1,
      alpha=1.0, lam=1.0, temperature=1.0, ce_weight=1.0))


def cache_defaults():
  """Offline synthesis (tasks/synthesize.py): job=synthesize writes samples_per_example x' per
  labelled example to `dir` (default WORKDIR/synthetic); a student with `dir` set streams
  them, using the first `samples` of each (0: all)."""
  return ml_collections.ConfigDict(dict(dir="", samples_per_example=16, samples=0))


def load(path, arg=None, **overrides):
  """get_config(arg) of the config file at `path`, with dotted-key overrides applied as
  --config.KEY=VALUE would (benchmarks and tests run configs exactly as the CLI does)."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top
  name = os.path.splitext(os.path.basename(path))[0] + "_config"
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(arg)
  for key, value in overrides.items():
    node = config
    *parents, leaf = key.split(".")
    for parent in parents:
      node = node[parent]
    node[leaf] = value
  return config
