r"""teacher.kind='diffusion': a class-conditional DiT with its AutoencoderKL as G, a BiT/timm T.

The published layout is the Hugging Face repository facebook/DiT-XL-2-256 (code and
weights CC-BY-NC 4.0: non-commercial use only): `transformer/` (models/dit.py),
`vae/` (an sd-vae-ft AutoencoderKL, models/autoencoder_kl.py) and
`scheduler/scheduler_config.json` (models/diffusion.py). The labeler is read as
teacher.kind='pretrained' reads it (teachers/pretrained.py).

  E(x)        the autoencoder's scaled posterior mean: a 32×32×4 latent at 256 px, the DiT's
              latent (its scale is encode_latent's), flattened as the pretrained kind does
  G(z', c)    DDIM (η = 0, teacher.ddim_steps steps of the full schedule, classifier-free
              guidance teacher.guidance on a doubled batch; 1 runs no doubled batch) under
              class c, then the autoencoder's decoder
  G(z)        without a class (Teacher.decode): the decoder alone, i.e. E→G reconstructions
  T(x)        the labeler, on the data's pixels mapped and resized to its input

Exploration is TGT's own. Noising a clean latent z to DDPM level t gives
x_t = √ᾱ_t·z + √(1−ᾱ_t)·ε, so x_t/√ᾱ_t = z + σ_t·ε with σ_t = √((1−ᾱ_t)/ᾱ_t): TGT-random's
z' = E(x) + σ·ε IS SDEdit's noised latent, scaled, for the timestep whose σ_t is nearest σ
(in log scale, among the DDIM timesteps; σ = 0 takes the smallest). G(z') denoises
√ᾱ_t·z' from that t to 0, so config.tgt.sigma is SDEdit's strength. TGT-prior's
z' ~ N(0, I) is x_T itself: all the steps run. DiT-XL-2-256's schedule (linear β
1e-4…0.02 over 1,000 steps) with the default 25 steps (leading spacing: 960, 920, …, 0):

    σ      t    σ_t    DDIM steps run (× 2 passes with guidance)
    0.1    40   0.144   2
    0.25   80   0.275   3
    0.5    160  0.560   5
    1.0    240  0.908   7
    2.0    400  2.041  11
    4.0    520  3.847  14
    prior  960  107    25

(`sigma_table` prints it for any schedule and step count;
tests/teachers/test_teachers_diffusion.py checks it.) The class: the real example's label y for TGT-random, or the labeler's argmax
T(x) with teacher.condition_on='labeler'; uniform over the classes for TGT-prior (tgt.py).
The DiT's classes must be the data's (ImageNet's 1,000 in TFDS's order, which is the
synset order DiT was trained with). TGT-gradient is refused: it would differentiate
through the whole denoising chain.

Pixels as the pretrained kind: the data's pixel_range outside, [-1, 1] for the
autoencoder, G's output clipped. The DiT works at f·sample_size px (f the autoencoder's
downsampling: 8·32 = 256); a student at another size (224) has its images resized to
that before E and G's output resized back (bilinear, antialiased when shrinking).

Directories: teacher.dit_dir holds transformer/, vae/ and scheduler/; teacher.transformer_dir,
teacher.vae_dir and teacher.scheduler_dir, when set, replace its sub-directories (the
smoke config's fixtures lie apart). Parameters: {"generator": autoencoder, "diffusion":
DiT, "labeler": labeler}; identity: each part's fingerprint and every published file's sha256.
"""

import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from etils import epath
from jax.sharding import NamedSharding, PartitionSpec as P

from tgt_jax import sharding, tgt
from tgt_jax.engine import artifacts
from tgt_jax.models import autoencoder_kl, diffusion, dit
from tgt_jax.teachers import loading, pretrained

CONDITION_ON = ("label", "labeler")
GRADIENT_METHODS = ("tgt_gradient", "tgt_gradient_input")
SUBDIRECTORIES = {"transformer_dir": "transformer", "vae_dir": "vae", "scheduler_dir": "scheduler"}


# -- the schedule: σ ↔ t ---------------------------------------------------------------------


def noise_level(schedule, t):
  """σ_t = √((1 − ᾱ_t)/ᾱ_t): the noise of x_t/√ᾱ_t = z + σ_t·ε (float64 numpy)."""
  alpha = schedule.alphas_cumprod().astype(np.float64)[np.asarray(t)]
  return np.sqrt((1.0 - alpha) / alpha)


def timesteps_for_sigma(schedule, num_steps, sigma):
  """The DDIM timesteps (descending numpy int32) that denoise z + σ·ε: from the one of
  schedule.timesteps(num_steps) whose σ_t is nearest σ in log scale, down to the last;
  σ = inf (a prior draw) runs them all, σ = 0 the last alone."""
  grid = schedule.timesteps(num_steps)
  if sigma == math.inf:
    return grid
  if not sigma > 0:
    return grid[-1:]
  start = int(np.argmin(np.abs(np.log(noise_level(schedule, grid)) - math.log(sigma))))
  return grid[start:]


def sigma_table(schedule, num_steps, sigmas=(0.1, 0.25, 0.5, 1.0, 2.0, 4.0)):
  """[(σ, t, σ_t, steps run)] for the kind's docstring and the README."""
  rows = []
  for sigma in (*sigmas, math.inf):
    steps = timesteps_for_sigma(schedule, num_steps, sigma)
    rows.append((sigma, int(steps[0]), float(noise_level(schedule, steps[0])), len(steps)))
  return rows


# -- the settings ----------------------------------------------------------------------------


def directories(tconfig):
  """{transformer_dir, vae_dir, scheduler_dir}: each its own key when set, else under dit_dir."""
  root = tconfig.get("dit_dir", "")
  return {key: tconfig.get(key, "") or (os.path.join(root, sub) if root else "")
          for key, sub in SUBDIRECTORIES.items()}


def _as_pretrained(config):
  """The config as the pretrained kind reads it (its vae_dir filled in), for its checks."""
  filled = ml_collections.ConfigDict(config.to_dict())
  filled.teacher.vae_dir = directories(config.teacher)["vae_dir"]
  return filled


def validate(config):
  t = config.teacher
  missing = [k for k, v in directories(t).items() if not v]
  if missing:
    raise ValueError(f"teacher.kind='diffusion' needs teacher.dit_dir (a copy of "
                     f"huggingface.co/facebook/DiT-XL-2-256: transformer/, vae/, scheduler/) or "
                     f"teacher.{', teacher.'.join(missing)}.")
  if not t.get("labeler_file"):
    raise ValueError("teacher.kind='diffusion' needs teacher.labeler_file: a BiT .npz or a timm "
                     "model.safetensors.")
  loading.validate_pretrained(_as_pretrained(config))
  check_sampling(config, "diffusion")


def check_sampling(config, kind):
  """The sampling settings every class-conditional kind reads, named when wrong."""
  t = config.teacher
  steps = t.get("ddim_steps")
  if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
    raise ValueError(f"teacher.ddim_steps={steps!r}: give a whole number of DDIM steps >= 1.")
  guidance = t.get("guidance")
  if isinstance(guidance, bool) or not isinstance(guidance, (int, float)) or not (
      0 <= guidance < math.inf):
    raise ValueError(f"teacher.guidance={guidance!r}: give a finite classifier-free guidance "
                     "scale >= 0 (1: none, no doubled batch).")
  if t.get("condition_on") not in CONDITION_ON:
    raise ValueError(f"Unknown teacher.condition_on {t.get('condition_on')!r}; choose one of "
                     f"{list(CONDITION_ON)} (the real label, or the labeler's argmax).")
  if config.get("method") in GRADIENT_METHODS:
    raise ValueError(f"method {config.method!r} with teacher.kind={kind!r}: refused, it would "
                     "differentiate through the DDIM chain; use tgt_random or tgt_prior.")


def where(config, workdir):
  del workdir
  return directories(config.teacher)["transformer_dir"]


# -- the teacher -----------------------------------------------------------------------------


def _resize(images, size, pixel_range):
  if images.shape[1:3] == (size, size):
    return images
  resized = jax.image.resize(images, (images.shape[0], size, size, images.shape[3]), "bilinear",
                             antialias=True)
  return jnp.clip(resized, *pixel_range)


def per_device(fn, params, *rows):
  """fn(params, *rows) with each device running its own rows (shard_map over the data axis):
  a DiT's class-table gather on batch-sharded labels has no unambiguous sharding, and a
  prior draw, made replicated, would otherwise be denoised whole on every device. Outside a
  mesh fn runs as is; rows that do not split over the devices run replicated."""
  mesh = jax.typeof(rows[0]).sharding.mesh
  if (mesh.empty or sharding.DATA_AXIS not in mesh.axis_names
      or mesh.shape[sharding.DATA_AXIS] == 1):      # one device: nothing to split
    return fn(params, *rows)
  if rows[0].shape[0] % mesh.shape[sharding.DATA_AXIS]:
    return fn(params, *[sharding.gathered(r) for r in rows])
  spec = P(sharding.DATA_AXIS)
  rows = [jax.sharding.reshard(r, NamedSharding(mesh, spec)) for r in rows]
  return jax.shard_map(fn, mesh=mesh, in_specs=(P(), *[spec] * len(rows)), out_specs=spec)(
      params, *rows)


def teacher_functions(base, transformer, schedule, num_steps, guidance, image_shape,
                      native_size, condition_on="label"):
  """The tgt.Teacher: `base` (pretrained.teacher_functions at native_size px) for E, the
  plain G and T; DDIM with `transformer` (a dit.DiT) for the class-conditional G."""
  pixel_range, size = base.pixel_range, image_shape[0]
  config = transformer.config
  latent = (config.sample_size, config.sample_size, config.in_channels)
  alphas = schedule.alphas_cumprod()

  def encode(p, x):
    return base.encode(p, _resize(x, native_size, pixel_range))

  def decode(p, z):
    return _resize(base.decode(p, z), size, pixel_range)

  def decode_conditional(p, z, labels, sigma):
    timesteps = timesteps_for_sigma(schedule, num_steps, sigma)
    x_t = z.reshape(z.shape[0], *latent)
    if sigma != math.inf:            # z + σ·ε = x_t/√ᾱ_t
      x_t = x_t * np.float32(np.sqrt(alphas[timesteps[0]]))
    x0 = per_device(lambda variables, x, c: diffusion.denoise(
        dit.noise_fn(transformer, variables), x, c, timesteps, num_steps, guidance,
        null_class=config.null_class, schedule=schedule), p["diffusion"], x_t,
                     jnp.asarray(labels, jnp.int32))
    return decode(p, x0.reshape(z.shape[0], -1))

  return tgt.Teacher(encode=encode, decode=decode, label=base.label, latent_dim=base.latent_dim,
                     pixel_range=pixel_range, decode_conditional=decode_conditional,
                     num_classes=config.num_classes,
                     condition_on_labeler=condition_on == "labeler")


def published_files(config, parts):
  """Every published file the teacher's `parts` are read from."""
  files = loading.published_files(_as_pretrained(config), parts)
  if "generator" in parts:
    dirs = directories(config.teacher)
    files += [os.fspath(epath.Path(dirs["transformer_dir"]) / name)
              for name in (dit.CONFIG_FILE, dit.WEIGHTS_FILE)]
    files.append(os.fspath(epath.Path(dirs["scheduler_dir"]) / diffusion.SCHEDULER_FILE))
  return [f for f in files if epath.Path(f).exists()]


def _check_fit(vae_config, transformer_config, dirs, num_classes):
  """The autoencoder's latent must be the DiT's, and the DiT's classes the data's."""
  if vae_config.latent_channels != transformer_config.in_channels:
    raise ValueError(f"The autoencoder in {dirs['vae_dir']!r} has {vae_config.latent_channels} "
                     f"latent channels; the DiT in {dirs['transformer_dir']!r} reads "
                     f"{transformer_config.in_channels}.")
  if transformer_config.num_classes != num_classes:
    raise ValueError(f"The DiT in {dirs['transformer_dir']!r} knows "
                     f"{transformer_config.num_classes} classes; the data has {num_classes}.")


def load(config, workdir, source, mesh, parts, may_train):
  """E, G from the DiT repository's files and T from a BiT/timm file; `parts` ("labeler",)
  reads the labeler alone. Nothing is written."""
  del workdir, may_train
  t = config.teacher
  dtype = loading.DTYPES[t.get("dtype", "")]
  kwargs = {}
  if t.labeler_format == "bit":
    kwargs["groups"] = int(t.labeler_groups)
    if t.get("labeler_pool_padding"):
      kwargs["pool_padding"] = t.labeler_pool_padding
  resolution = int(t.get("labeler_resolution", 0))
  labeler, labeler_variables = pretrained.load_labeler(
      t.labeler_format, t.labeler_file, t.get("labeler_arch") or None, source.num_classes,
      dtype, **kwargs)
  dirs = directories(t)
  meta = {"kind": "diffusion", "parts": [p for p in pretrained.PARTS if p in parts],
          "labeler_format": t.labeler_format, "labeler_path": str(t.labeler_file),
          "num_classes": labeler.num_classes,
          "labeler_input": pretrained.labeler_input(t.labeler_format, t.labeler_file, labeler,
                                                    resolution),
          "image_shape": list(source.image_shape),
          "pixel_range": [float(v) for v in source.pixel_range]}
  params = {"labeler": labeler_variables}
  fingerprinted = tuple(parts)
  if "generator" not in parts:
    functions = pretrained.teacher_functions(None, labeler, source.image_shape,
                                             source.pixel_range, resolution)
  else:
    vae_config, vae, params["generator"] = autoencoder_kl.load(dirs["vae_dir"], dtype)
    transformer_config, transformer, params["diffusion"] = dit.load(dirs["transformer_dir"],
                                                                   dtype)
    schedule = diffusion.load_schedule(dirs["scheduler_dir"])
    _check_fit(vae_config, transformer_config, dirs, source.num_classes)
    if t.ddim_steps > schedule.num_train_timesteps:
      raise ValueError(f"teacher.ddim_steps={t.ddim_steps}: the schedule in "
                       f"{dirs['scheduler_dir']!r} has {schedule.num_train_timesteps} steps.")
    native = 2 ** (len(vae_config.block_out_channels) - 1) * transformer_config.sample_size
    base = pretrained.teacher_functions(vae, labeler, (native, native, source.image_shape[2]),
                                        source.pixel_range, resolution)
    functions = teacher_functions(base, transformer, schedule, t.ddim_steps, float(t.guidance),
                                  source.image_shape, native, t.condition_on)
    sigma = float(config.get("tgt", {}).get("sigma", 0.0))
    meta.update(dirs, latent_shape=[transformer_config.sample_size] * 2 + [
        transformer_config.in_channels], native_resolution=native, ddim_steps=t.ddim_steps,
                guidance=float(t.guidance), condition_on=t.condition_on,
                sdedit_start_timestep_at_sigma=int(
                    timesteps_for_sigma(schedule, t.ddim_steps, sigma)[0]))
    fingerprinted += ("diffusion",)
  meta["latent_dim"] = functions.latent_dim
  # A published file carries no checksum of its own: its sha256 joins the student's identity.
  identity = {**loading.fingerprints(params, fingerprinted),
              **{f"sha256 of {f}": artifacts.sha256_of(f) for f in published_files(config, parts)}}
  mesh = mesh if mesh is not None else sharding.make_mesh()
  located = dirs["transformer_dir"] if "generator" in parts else t.labeler_file
  return loading.LoadedTeacher(located, meta, sharding.replicate(mesh, params), functions,
                               identity)
