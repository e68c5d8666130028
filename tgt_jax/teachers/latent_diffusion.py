r"""teacher.kind='latent_diffusion': a DiT trained by tgt_jax in the latent of a tgt_jax teacher.

The published diffusion kind (teachers/diffusion.py) reads DiT-XL/2 and its autoencoder.
For data where no published DiT exists (Fashion-MNIST) the same DiT module
(models/dit.py) is trained here, in the latent of the VAE that the trained kind holds
in teacher.dir, so E, the decoder and T are that teacher's and only the way x' is
found changes: the VAE teacher explores with z + σ·ε and N(0, I), this one denoises
z + σ·ε (SDEdit) or pure noise under a class. Why the latent and not the pixels: the
comparison then isolates the generator's prior (same E, decoder and labeler), the
latent (32 numbers, a 4×4×2 grid of 16 tokens) trains in an hour on 2 CPU cores where
28×28 pixels (49 patches of 4×4) would not, and it is DiT's own design (latent diffusion).

  E(x)       the VAE's posterior mean, standardised per dimension ((z − mean) / std over
             the first `stats_batches` training batches): the unit scale DDPM assumes
  G(z', c)   DDIM (teacher.ddim_steps, guidance teacher.guidance) under class c, then the
             VAE's decoder of z·std + mean; σ ↔ SDEdit's t as teachers/diffusion.py says
  T(x)       the teacher's labeler

The DiT lives in teacher.diffusion_dir (default WORKDIR/diffusion): `diffusion.json`
(architecture, schedule, latent statistics, identity, report) written after `params/`.
Its identity is its settings, the seed, the data and the fingerprint of the VAE whose
latent it models: a DiT made for another VAE is refused. It trains on the engine's
loop (teachers/training.fit) in `<diffusion_dir>/training/diffusion/` (resumable,
metrics.jsonl, TensorBoard), with ε-prediction MSE on uniform timesteps and
`class_dropout` of the labels replaced by the null class (classifier-free guidance);
every eval_every steps the labeler's accuracy on 10 class-conditional samples per class
is logged, and at the end a per-class grid is written (samples_per_class_<step>.png there)
and the labeler's accuracy on report_per_class samples per class goes into the report.
"""

import dataclasses
import json
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath
from jax.experimental import multihost_utils

from tgt_jax import checkpointing, metrics, sharding
from tgt_jax.data import sources
from tgt_jax.engine import artifacts
from tgt_jax.evaluation import classification as evaluation
from tgt_jax.models import diffusion as ddim, dit
from tgt_jax.teachers import diffusion, generative, loading, training

META_FILE = "diffusion.json"
# The settings that give a trained DiT its meaning (teacher.diffusion.*).
DIFFUSION_KEYS = ("grid", "heads", "head_dim", "layers", "steps", "batch_size", "learning_rate",
                  "class_dropout", "stats_batches", "num_train_timesteps", "beta_start",
                  "beta_end")
SAMPLES_PER_CLASS = 10


def diffusion_dir(config, workdir):
  return config.teacher.get("diffusion_dir") or str(epath.Path(workdir) / "diffusion")


def validate(config):
  loading.validate_trained(config)
  t, d = config.teacher, config.teacher.get("diffusion")
  if d is None:
    raise ValueError("teacher.kind='latent_diffusion' needs teacher.diffusion (the DiT's "
                     "settings): use configs/fashion_mnist.py:teacher=diffusion.")
  for key in ("grid", "heads", "head_dim", "layers", "steps", "batch_size", "stats_batches"):
    value = d.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ValueError(f"teacher.diffusion.{key}={value!r}: give a whole number >= 1.")
  if int(t.latent_dim) % (d.grid * d.grid):
    raise ValueError(f"teacher.diffusion.grid={d.grid}: the {t.latent_dim}-d latent must split "
                     f"into a {d.grid}x{d.grid} grid of channels; choose a grid whose square "
                     f"divides teacher.latent_dim.")
  if d.heads * d.head_dim % 4:
    raise ValueError(f"teacher.diffusion.heads×head_dim = {d.heads * d.head_dim}: the DiT's "
                     "2-D position embedding needs a width divisible by 4.")
  if not 0 <= d.class_dropout < 1:
    raise ValueError(f"teacher.diffusion.class_dropout={d.class_dropout!r}: give a fraction in "
                     "[0, 1) of labels replaced by the null class.")
  diffusion.check_sampling(config, "latent_diffusion")


def where(config, workdir):
  return diffusion_dir(config, workdir)


# -- the model ------------------------------------------------------------------------------


def dit_config(tconfig, num_classes):
  d = tconfig.diffusion
  channels = int(tconfig.latent_dim) // (d.grid * d.grid)
  return dit.DiTConfig(num_attention_heads=d.heads, attention_head_dim=d.head_dim,
                       in_channels=channels, out_channels=channels, num_layers=d.layers,
                       sample_size=d.grid, patch_size=1, num_classes=int(num_classes))


def schedule_of(tconfig):
  d = tconfig.diffusion
  return ddim.Schedule(num_train_timesteps=d.num_train_timesteps, beta_start=d.beta_start,
                       beta_end=d.beta_end)


def init_dit(config, seed):
  """DiT's own initialisation where it matters: every adaLN modulation and the output layer
  start at zero, so each block starts as the identity (adaLN-zero) and ε̂ = 0."""
  module = dit.DiT(config)
  grid = config.sample_size
  x = jnp.zeros((1, grid, grid, config.in_channels))
  t = jnp.zeros((1,), jnp.int32)
  variables = jax.jit(module.init)(jax.random.key(seed), x, t, t)

  def zero_modulation(path, leaf):
    names = [getattr(p, "key", "") for p in path]
    return jnp.zeros_like(leaf) if ("linear" in names and "norm1" in names) or (
        "proj_out_2" in names) or ("proj_out_1" in names) else leaf

  return module, jax.tree_util.tree_map_with_path(zero_modulation, variables)


def _standardise(encode, mean, std):
  return lambda p, x: (encode(p, x) - mean) / std


def _unstandardise(decode, mean, std):
  return lambda p, z: decode(p, z * std + mean)


def teacher_functions(trained, module, schedule, mean, std, tconfig, image_shape):
  """The tgt.Teacher: the trained teacher's E (standardised), decoder and T, and DDIM with
  the DiT as the class-conditional G (teachers/diffusion.py's teacher_functions)."""
  mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
  base = dataclasses.replace(trained, encode=_standardise(trained.encode, mean, std),
                             decode=_unstandardise(trained.decode, mean, std))
  return diffusion.teacher_functions(base, module, schedule, int(tconfig.ddim_steps),
                                     float(tconfig.guidance), image_shape, image_shape[0],
                                     tconfig.condition_on)


# -- training -------------------------------------------------------------------------------


def latent_statistics(encode, params, stream, batches):
  """Per-dimension mean and std of E(x) over the first `batches` batches (all processes)."""
  encode = jax.jit(encode)
  total = squares = None
  count = 0
  for _, batch in zip(range(batches), stream):
    z = np.asarray(jax.device_get(encode(params, jnp.asarray(batch["image"]))), np.float64)
    total = z.sum(0) if total is None else total + z.sum(0)
    squares = (z ** 2).sum(0) if squares is None else squares + (z ** 2).sum(0)
    count += len(z)
  if jax.process_count() > 1:
    total, squares, count = (np.sum(multihost_utils.process_allgather(v), 0)
                             for v in (total, squares, np.asarray(count)))
  mean = total / count
  std = np.sqrt(np.maximum(squares / count - mean ** 2, 1e-12))
  return mean.astype(np.float32), std.astype(np.float32)


def noise_prediction_loss(module, encode, frozen, schedule, class_dropout, null_class):
  """ε-prediction MSE on x_t = √ᾱ_t·z + √(1−ᾱ_t)·ε, t uniform, z = E(x) of the batch's images
  (the frozen VAE is a constant of the step), `class_dropout` of the labels made null."""
  grid = module.config.sample_size, module.config.sample_size, module.config.in_channels

  def loss(params, batch, rng, step):
    del step
    z = encode(frozen, batch["image"]).reshape(-1, *grid)
    t_rng, noise_rng, drop_rng = jax.random.split(rng, 3)
    t = jax.random.randint(t_rng, (z.shape[0],), 0, schedule.num_train_timesteps)
    noise = jax.random.normal(noise_rng, z.shape)
    dropped = jax.random.bernoulli(drop_rng, class_dropout, (z.shape[0],))
    labels = jnp.where(dropped, null_class, batch["label"])
    predicted = diffusion.per_device(lambda v, x, steps, classes: module.apply(
        v, x, steps, classes)[0], params, ddim.add_noise(schedule, z, noise, t), t, labels)
    return jnp.mean(jnp.square(predicted - noise)), {}

  return loss


def sample_per_class(functions, params, num_classes, per_class, key):
  """`per_class` class-conditional prior samples of every class: (images, classes)."""
  classes = jnp.repeat(jnp.arange(num_classes), per_class)
  z = jax.random.normal(key, (len(classes), functions.latent_dim))
  return functions.decode_conditional(params, z, classes, float("inf")), classes


def _sample_accuracy(functions, params_of, num_classes, per_class):
  """dit params → {labeler_accuracy_on_samples}: the eval the DiT's training logs."""

  @jax.jit
  def accuracy(dit_params):
    params = params_of(dit_params)
    images, classes = sample_per_class(functions, params, num_classes, per_class,
                                       jax.random.key(0))
    return jnp.mean(jnp.argmax(functions.label(params, images), -1) == classes)

  return lambda dit_params: {"labeler_accuracy_on_samples": accuracy(dit_params)}


def train(config, workdir, source, mesh, trained):
  """Trains the DiT into diffusion_dir (resuming) and saves it; `trained` is the loaded VAE
  teacher. Returns the saved meta."""
  t, d = config.teacher, config.teacher.diffusion
  directory = diffusion_dir(config, workdir)
  identity = wanted_identity(config, source, trained)
  module, variables = init_dit(dit_config(t, source.num_classes), int(t.seed))
  schedule = schedule_of(t)
  seed = int(t.seed)
  stream = training.teacher_stream(source, d.batch_size, seed)
  host = jax.device_get(trained.params)
  mean, std = latent_statistics(trained.functions.encode, host, stream(0), d.stats_batches)
  functions = teacher_functions(trained.functions, module, schedule, mean, std, t,
                                source.image_shape)
  run_dir = epath.Path(directory) / "training" / "diffusion"
  artifacts.record_identity(run_dir, identity, "diffusion model's training",
                            "a DiT is never trained further under other settings; use the "
                            "settings it started with, or another teacher.diffusion_dir")
  evaluate = _sample_accuracy(functions, lambda p: {**host, "diffusion": p}, source.num_classes,
                              SAMPLES_PER_CLASS)
  params = training.fit(
      noise_prediction_loss(module, functions.encode, host, schedule, d.class_dropout,
                            module.config.null_class),
      variables, stream, steps=d.steps, batch_size=d.batch_size,
      learning_rate=d.learning_rate, seed=seed, mesh=mesh, name="diffusion",
      log_every=t.get("log_every", 500), run_dir=str(run_dir), evaluate=evaluate,
      eval_every=d.get("eval_every", 0))
  full = sharding.replicate(mesh, {**host, "diffusion": jax.device_get(params)})
  per_class = max(d.get("report_per_class", 100), SAMPLES_PER_CLASS)
  sample = jax.jit(lambda p: (lambda images, classes: (
      images, jnp.argmax(functions.label(p, images), -1), classes))(*sample_per_class(
          functions, p, source.num_classes, per_class, jax.random.key(1))))
  images, predicted, classes = jax.device_get(sample(full))
  report = {"labeler_accuracy_on_samples": evaluation.balanced_accuracy(
      predicted, np.asarray(classes), source.num_classes)}
  meta = {"dit": dataclasses.asdict(module.config), "schedule": dataclasses.asdict(schedule),
          "latent_mean": mean.tolist(), "latent_std": std.tolist(), "identity": identity,
          "report": report}
  artifacts.save_params_then_json(directory, jax.device_get(params), META_FILE, meta)
  _write_grid(run_dir, images, source, per_class, d.steps)
  logging.info("Diffusion model in %s: %s", directory, report)
  return meta


def _write_grid(run_dir, images, source, per_class, step):
  """samples_per_class_<step>.png (and TensorBoard) in the DiT's run directory: a row per
  class, the first SAMPLES_PER_CLASS of the report's prior samples: a grid a person can judge."""
  if jax.process_index():
    return
  low, high = source.pixel_range
  rows = (np.asarray(images) - low) / (high - low)
  rows = rows.reshape(source.num_classes, per_class, *rows.shape[1:])[:, :SAMPLES_PER_CLASS]
  writer = metrics.MetricWriter(run_dir)
  writer.image(step, "samples_per_class", metrics.image_grid(list(rows)))
  writer.close()


# -- on disk --------------------------------------------------------------------------------


def wanted_identity(config, source, trained):
  d = config.teacher.diffusion
  return {**{f"teacher.diffusion.{k}": d.get(k) for k in DIFFUSION_KEYS},
          "teacher.seed": int(config.teacher.seed),   # never the student's seed: one DiT serves all
          "vae_fingerprint": trained.identity["teacher_params.generator"],
          **training.data_identity(source)}


def exists(directory):
  return epath.Path(directory, META_FILE).exists()


def read_meta(directory):
  path = epath.Path(directory, META_FILE)
  try:
    meta = json.loads(path.read_text())
    dit.DiTConfig(**meta["dit"])
    ddim.Schedule(**meta["schedule"])
  except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
    raise checkpointing.DamagedArtifact(
        f"{os.fspath(path)} does not read as a diffusion model's metadata "
        f"({checkpointing.first_line(e)}): it is damaged; retrain the DiT into another "
        "teacher.diffusion_dir.") from None
  return meta


def read(directory, identity, mesh):
  """(meta, DiT variables replicated on mesh) of the DiT in `directory`, checked to be the
  one this run's settings, data and VAE ask for."""
  meta = read_meta(directory)
  artifacts.check_identity(meta.get("identity", {}), identity, "diffusion model", directory,
                           "a DiT models one VAE's latent on one dataset; retrain it (another "
                           "teacher.diffusion_dir) or use the settings it was made with")
  config = dit.DiTConfig(**meta["dit"])
  module = dit.DiT(config)
  params = artifacts.restore_replicated(
      epath.Path(directory) / artifacts.PARAMS_DIR, lambda: init_dit(config, 0)[1], mesh,
      lambda name, want, found: _shape_error(directory, name, want, found),
      checksums=meta.get(artifacts.CHECKSUMS), what="diffusion model")
  return meta, module, params


def _shape_error(directory, name, expected, found):
  raise ValueError(f"The DiT in {os.fspath(directory)!r} does not match {META_FILE}: parameter "
                   f"{name} expected shape {expected}, found {found}; it is damaged, retrain it.")


def load(config, workdir, source, mesh, parts, may_train):
  """The trained teacher (teacher.dir) with the DiT as its G; the DiT is trained first
  where it is missing and the job may train."""
  mesh = mesh if mesh is not None else sharding.make_mesh()
  wanted_parts = tuple(p for p in generative.PARTS if p in parts or p == "labeler")
  trained = loading.load_trained(config, workdir, source, mesh, wanted_parts, may_train)
  if "generator" not in parts:
    return trained
  directory = diffusion_dir(config, workdir)
  identity = wanted_identity(config, source, trained)
  if not exists(directory):
    if not may_train:
      raise FileNotFoundError(f"No diffusion model at {directory!r} and this job only reads "
                              "teachers: run job=diffusion first, or set "
                              "teacher.diffusion_dir to a trained one.")
    with artifacts.writing(directory, "diffusion model", config_key="teacher.diffusion_dir"):
      if not exists(directory):
        train(config, workdir, source, mesh, trained)
  meta, module, dit_params = read(directory, identity, mesh)
  schedule = ddim.Schedule(**meta["schedule"])
  functions = teacher_functions(trained.functions, module, schedule, meta["latent_mean"],
                                meta["latent_std"], config.teacher, source.image_shape)
  meta = {**trained.meta, "kind": "latent_diffusion", "diffusion_dir": directory,
          "diffusion_report": meta["report"], "ddim_steps": int(config.teacher.ddim_steps),
          "guidance": float(config.teacher.guidance)}
  identity = {**trained.identity,
              "diffusion": artifacts.params_fingerprint(dit_params)}
  return loading.LoadedTeacher(directory, meta, {**trained.params, "diffusion": dit_params},
                               functions, identity)


def run_job(config, workdir):
  """job=diffusion: the VAE teacher (trained if missing), then the DiT; results.json says
  where both are and the DiT's report."""
  source = sources.make_source(config, with_subset=False)
  loaded = load(config, workdir, source, sharding.make_mesh(), generative.PARTS, True)
  return artifacts.write_results(workdir, {
      "job": "diffusion", "teacher_dir": training.teacher_dir(config, workdir),
      "diffusion_dir": loaded.directory, "seed": config.seed, **loaded.meta["diffusion_report"]})
