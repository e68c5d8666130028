"""Training a teacher: the generator (VAE: E and G) and the labeler T, then the teacher job.

Each part is one training on the engine's loop (`fit`), in its own run directory
`<teacher dir>/training/<part>/` (checkpoints/, metrics.jsonl, tensorboard/), so
a killed teacher job resumes where it stopped, as a student does. The job then
reports what decides TGT's quality: the labeler's balanced test accuracy, the
VAE's reconstruction error and KL (nats), the labeler's accuracy on E→G
reconstructions and how often a label survives z = E(x) + σ·ε.
"""

import hashlib
import json
import logging
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from etils import epath

from tgt_jax import losses, metrics, sharding
from tgt_jax.teachers import generative
from tgt_jax.data import sources
from tgt_jax.engine import artifacts, loop, state as state_lib
from tgt_jax.evaluation import classification as evaluation
from tgt_jax.teachers import text as text_teacher

REPORT_EXAMPLES = 2048       # teacher figures of a TFDS dataset: its first eval split's first n
CHECKPOINT_EVERY = 1000      # steps between a teacher part's checkpoints (and at its end)


def teacher_dir(config, workdir):
  """Where the configured teacher lives: config.teacher.dir, or WORKDIR/teacher."""
  return config.teacher.dir or str(epath.Path(workdir) / "teacher")


def run_dir_of(teacher_directory):
  return str(epath.Path(teacher_directory) / "training")


class NoCheckpoints:
  """For fits nobody resumes (benchmarks, test fixtures): the loop's checkpointer, doing nothing."""
  directory = None

  def latest_step(self):
    return None

  def save(self, *args, **kwargs):
    del args, kwargs

  def wait(self):
    pass

  def close(self):
    pass

  def restore_latest_intact(self, target, may_move=True):
    del target, may_move


def _batches(data, batch_size, seed):
  """start_step → stream: an in-memory split by (seed, step), or a callable as it is."""
  if hasattr(data, "images"):
    return lambda start: sources.split_stream(data, batch_size, seed, start)
  return data


def teacher_stream(dataset, batch_size, seed):
  """start_step → this process's rows of each global batch of the whole train split, drawn by
  (seed, step): what every teacher part trains on (a source, or an in-memory data.Dataset)."""
  if hasattr(dataset, "teacher_batches"):
    return lambda start: dataset.teacher_batches(batch_size, seed, start)
  return _batches(dataset.splits["train"], batch_size, seed)


def fit(loss_fn, params, data, *, steps, batch_size, learning_rate, seed, mesh, name,
        log_every=500, run_dir=None, checkpoint_every=CHECKPOINT_EVERY, evaluate=None,
        eval_every=0):
  """Adam with cosine decay on `loss_fn(params, batch, rng, step) -> (loss, aux)`.

  `data` is an in-memory split (batches drawn by (seed, step)) or a function
  start_step → iterator of this process's rows of each global batch. With
  `run_dir`, the fit checkpoints there and resumes from it; without, it is a
  throwaway fit (nothing written). `evaluate(params) → scalars` every
  `eval_every` steps logs a validation curve.
  """
  sharding.check_batch_size(batch_size, mesh, f"{name} batch size")
  tx = optax.adam(optax.cosine_decay_schedule(learning_rate, max(steps, 1)))
  repl, rows_sharded = sharding.replicated(mesh), sharding.batch_sharded(mesh)
  rng = jax.random.key(seed)

  def step_fn(state, batch, rng):
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, batch, jax.random.fold_in(rng, state.step), state.step)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    new_state = state_lib.TrainState(state.step + 1, optax.apply_updates(state.params, updates),
                                     opt_state)
    return new_state, {"loss": loss, **aux}

  step_fn = jax.jit(step_fn, in_shardings=(repl, rows_sharded, repl), out_shardings=repl,
                    donate_argnums=(0,))
  state = sharding.replicate(mesh, state_lib.TrainState(jnp.asarray(0, jnp.int32), params,
                                                        tx.init(params)))
  schedule = loop.Schedule(steps, log_every, checkpoint_every, eval_every)
  if run_dir is None:
    ckpt, writer = NoCheckpoints(), metrics.MetricWriter(".", enabled=False)
  else:
    part_dir = epath.Path(run_dir)
    ckpt = loop.checkpoints_of(part_dir, keep=1, label=name)
    writer = metrics.MetricWriter(part_dir)
  try:
    state = loop.restore_or_start(ckpt, state)
    state = loop.train(state, lambda s, b: step_fn(s, b, rng), _batches(data, batch_size, seed),
                       ckpt, writer, schedule, mesh, name=name, evaluate=evaluate,
                       meta={"part": name})
  finally:
    ckpt.close()
    writer.close()
  return state.params


def labeler_loss(labeler):
  """Cross-entropy of the labeler module on a labelled batch, for `fit`."""

  def loss(params, batch, rng, step):
    del rng, step
    logits = labeler.apply(params, batch["image"])
    return losses.cross_entropy(logits, batch["label"]), {
        "accuracy": losses.accuracy(logits, batch["label"])}

  return loss


def image_vae_loss(generator, tconfig):
  """Negative ELBO of the image VAE (fixed-variance Gaussian, β·KL after a warm-up), for fit."""

  def loss(params, batch, rng, step):
    warmup = jnp.minimum(1.0, (step + 1) / max(tconfig.kl_warmup_steps, 1))
    recon, mean, logvar = generator.apply(params, batch["image"], rng)
    value, nll, kl = losses.gaussian_vae_loss(batch["image"], recon, mean, logvar,
                                              tconfig.pixel_sigma, tconfig.beta * warmup)
    return value, {"recon_nll": nll, "kl_nats": kl}

  return loss


# The teacher settings that give each part its meaning (with the seed and the data): a part
# made with other values is another part, never trained further (the LOSS this prevents: a
# labeler a KD student distilled from, continued under more steps and overwritten).
PART_KEYS = {
    "generator": ("generator", "latent_dim", "pixel_sigma", "beta", "kl_warmup_steps",
                  "generator_steps", "batch_size", "learning_rate"),
    "labeler": ("labeler", "labeler_steps", "batch_size", "learning_rate"),
}
def data_identity(dataset):
  """What a teacher part saw: shapes, classes, vocabulary and, for in-memory data, a hash of
  the train split it trained on (a data.Dataset and a sources.MemorySource agree)."""
  out = {"data.image_shape": [int(v) for v in dataset.image_shape],
         "data.num_classes": int(dataset.num_classes)}
  if getattr(dataset, "vocabulary", None) is not None:
    out["data.vocabulary_fingerprint"] = generative.vocabulary_fingerprint(dataset.vocabulary)
  split = dataset.splits["train"] if hasattr(dataset, "splits") else getattr(dataset, "train",
                                                                             None)
  if split is not None and hasattr(split, "images"):
    digest = hashlib.sha256(np.ascontiguousarray(split.images).tobytes())
    digest.update(np.ascontiguousarray(split.labels).tobytes())
    out["data.train_fingerprint"] = digest.hexdigest()[:16]
  elif getattr(dataset, "pool_fingerprint", None):     # TFDS read by index: records and labels
    out["data.train_fingerprint"] = dataset.pool_fingerprint
  return out


def part_identities(tconfig, dataset, seed=0):
  """{part: its identity}: the part's settings, its effective seed and the data it saw."""
  data = data_identity(dataset)
  return {part: {**{f"teacher.{k}": tconfig.get(k) for k in keys},
                 "teacher.seed": int(tconfig.seed) + int(seed), **data}
          for part, keys in PART_KEYS.items()}


def _record_part_identity(part_dir, identity, part):
  """A part's run directory records the identity it trains under at its first start; a later
  start under other settings is refused before any step (a half-trained part included)."""
  artifacts.record_identity(part_dir, identity, f"teacher's {part} training",
                            "a part is never trained further under other settings; run with "
                            "the settings it started with, or use another teacher.dir")


def add_parts(tconfig, dataset, mesh, directory, missing, identities):
  """Trains the `missing` parts into the teacher at `directory` (the caller holds its lock),
  next to the parts it holds, which are read, not trained again."""
  meta, held = None, {}
  if generative.exists(directory):
    meta, held = generative.load(directory, dataset.image_shape, dataset.num_classes,
                                 latent_dim=tconfig.latent_dim, mesh=mesh,
                                 vocabulary=getattr(dataset, "vocabulary", None))
  parts = tuple(p for p in generative.PARTS if p in set(missing) | set(held))
  logging.info("Teacher in %s lacks %s: training them (config.teacher).", directory,
               list(missing))
  meta, params, report = train(tconfig, dataset, mesh, seed=0, run_dir=run_dir_of(directory),
                               parts=parts, held=held, identities=identities)
  meta["report"] = report
  if held:     # the JSON marks a complete teacher: gone until the new params are written
    generative.remove_meta(directory)
  generative.save(directory, meta, params)
  logging.info("Teacher report: %s", json.dumps(report))


def train(tconfig, dataset, mesh, seed=0, run_dir=None, parts=generative.PARTS, held=None,
          identities=None):
  """Trains the teacher's `parts` on the full train split; returns (meta, params, report).

  `dataset` is an in-memory data.Dataset or a data.sources source (TFDS streams).
  With `run_dir`, each part checkpoints in run_dir/<part> and resumes from there
  (a part already trained to its last step costs one restore); its identity is
  checked there first. `parts` = ("labeler",) is a labeler-only teacher: what KD uses,
  without the VAE it would never call. `held` = {part: params} are parts already
  made: kept as they are, not trained.
  """
  unknown = set(parts) - set(generative.PARTS) if parts else {"(none)"}
  if unknown:
    raise ValueError(f"Teacher parts {sorted(unknown)}: a teacher has some of "
                     f"{list(generative.PARTS)}, and the labeler always.")
  parts = tuple(p for p in generative.PARTS if p in parts or p == "labeler")   # always there
  held = dict(held or {})
  identities = identities or part_identities(tconfig, dataset, seed)
  to_train = [p for p in parts if p not in held]
  part_dir = lambda part: None if run_dir is None else str(epath.Path(run_dir) / part)
  if run_dir is not None:       # every part's settings are checked before any part trains
    for part in to_train:
      _record_part_identity(part_dir(part), identities[part], part)
  meta = dict(generator=tconfig.generator, labeler=tconfig.labeler,
              latent_dim=int(tconfig.latent_dim), image_shape=list(dataset.image_shape),
              num_classes=int(dataset.num_classes), pixel_range=list(dataset.pixel_range),
              parts=list(parts), part_identity={p: identities[p] for p in parts})
  is_text = getattr(dataset, "vocabulary", None) is not None
  if is_text:
    meta.update(vocab_size=len(dataset.vocabulary), input_dtype="int32",
                vocabulary_fingerprint=generative.vocabulary_fingerprint(dataset.vocabulary))
  generator, labeler = generative.build_modules(meta)
  params = {**generative.init_params(meta, jax.random.key(tconfig.seed + seed)), **held}
  part_seed = tconfig.seed + seed
  common = dict(batch_size=tconfig.batch_size, learning_rate=tconfig.learning_rate,
                seed=part_seed, mesh=mesh, log_every=tconfig.get("log_every", 500),
                checkpoint_every=tconfig.get("checkpoint_every", CHECKPOINT_EVERY))
  train_data = teacher_stream(dataset, tconfig.batch_size, part_seed)
  report_split = (dataset.sample(dataset.eval_split_names[0], REPORT_EXAMPLES)
                  if hasattr(dataset, "teacher_batches") else dataset.splits["test"])

  if "generator" in to_train:
    vae_loss = (text_teacher.sequence_vae_loss(generator, tconfig) if is_text
                else image_vae_loss(generator, tconfig))
    params["generator"] = fit(vae_loss, params["generator"], train_data,
                              steps=tconfig.generator_steps, name="generator",
                              run_dir=part_dir("generator"), **common)
  if "labeler" in to_train:
    params["labeler"] = fit(labeler_loss(labeler), params["labeler"], train_data,
                            steps=tconfig.labeler_steps, name="labeler",
                            run_dir=part_dir("labeler"), **common)
  if "generator" not in parts:
    return meta, params, evaluate_labeler(meta, params, report_split, mesh)
  report = (text_teacher.evaluate if is_text else evaluate)(meta, params, report_split, mesh)
  return meta, params, report


def evaluate_labeler(meta, params, split, mesh):
  """A labeler-only teacher's figures: its balanced accuracy on `split`."""
  _, labeler = generative.build_modules(meta)
  logits = jax.jit(labeler.apply)(sharding.replicate(mesh, params["labeler"]),
                                  jnp.asarray(split.images))
  predictions = np.argmax(jax.device_get(logits), -1)
  return {"labeler_test_accuracy": evaluation.balanced_accuracy(predictions, split.labels,
                                                                meta["num_classes"])}


def evaluate(meta, params, split, mesh, seed=0):
  """The teacher's quality figures on `split` (the test split in the job)."""
  fns = generative.as_functions(meta)
  generator, _ = generative.build_modules(meta)

  @jax.jit
  def figures(params, images, rng):
    mean, logvar = generator.apply(params["generator"], images, method=generator.encode)
    _, out = evaluation.teacher_outputs(fns, params, images, rng)
    del out["recon"]
    out["kl_nats"] = losses.gaussian_kl(mean, logvar)
    return out

  params = sharding.replicate(mesh, params)
  out = jax.device_get(figures(params, jnp.asarray(split.images), jax.random.key(seed)))
  return {**evaluation.teacher_report(out, split.labels, meta["num_classes"]),
          "reconstruction_mse": float(np.mean(out["recon_sq_error"]))}


def run_teacher_job(config, workdir):
  """The teacher job: train (resuming), report, save to teacher.dir (default WORKDIR/teacher).

  Under the directory's lock. Parts the directory holds must have been made with this
  run's settings (seed included); a complete teacher is kept as it is and reported."""
  source = sources.make_source(config, with_subset=False)
  mesh = sharding.make_mesh()
  start = time.time()
  directory = teacher_dir(config, workdir)
  identities = part_identities(config.teacher, source, config.seed)
  with artifacts.writing(directory, "teacher", config_key="teacher.dir"):
    held = {}
    if generative.exists(directory):
      meta = generative.read_meta(directory)
      generative.check_part_identities(meta, identities, generative.parts_of(meta), directory)
      meta, held = generative.load(directory, source.image_shape, source.num_classes,
                                   latent_dim=config.teacher.latent_dim, mesh=mesh,
                                   vocabulary=source.vocabulary)
    if set(held) == set(generative.PARTS):
      logging.info("The teacher in %s is complete and was made with these settings: kept.",
                   directory)
      params, report = held, meta.get("report", {})
    else:
      meta, params, report = train(config.teacher, source, mesh, seed=config.seed,
                                   run_dir=run_dir_of(directory), held=held,
                                   identities=identities)
      meta["report"] = report
      if held:
        generative.remove_meta(directory)
      generative.save(directory, meta, params)
    if source.vocabulary is not None and jax.process_index() == 0:
      samples = text_teacher.teacher_samples(meta, params, source.sample("test", 16), mesh,
                                             source.vocabulary, source.class_names)
      (epath.Path(directory) / "samples.txt").write_text(samples)
  results = {"job": "teacher", "teacher_dir": directory, "seed": config.seed,
             "wall_time_sec": time.time() - start, **report}
  return artifacts.write_results(workdir, results)

