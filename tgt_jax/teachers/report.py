"""job=teacher_report: what any image teacher is worth, measured before a pod-day is spent on it.

For the configured teacher (trained by tgt_jax, three parts, or published files) on
`config.report_split` (default: the first eval split), its first
`config.report_examples` examples (0: all):
  reconstruction_psnr_db          E→G against the image, per example, in the data's range
  labeler_test_accuracy           T on the real images (balanced accuracy)
  labeler_accuracy_on_reconstructions   T on G(E(x))
  label_kept_at_sigma_{σ}         how often T's label of x survives z = E(x) + σ·ε (for a
                                  class-conditional G: at SDEdit's strength σ, under the label)
  prior_label_entropy_nats        the mean entropy of T on G(z), z ~ N(0, I); low means
                                  confident samples, `prior_classes_hit` how many classes
                                  they cover (a collapsed prior hits few)
and a picture, teacher_report_*.png: rows real, E→G, σ = 0.5, σ = 1 and prior samples.
All of it lands in WORKDIR/results.json; the teacher is read, never written.
"""

import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from tgt_jax import metrics, sharding, tgt
from tgt_jax.data import sources
from tgt_jax.engine import artifacts
from tgt_jax.evaluation import classification as evaluation
from tgt_jax.teachers import kinds

GRID_SIGMAS = (0.5, 1.0)
DEFAULT_EXAMPLES = 1024


def validate(config):
  kinds.validate(config)
  if config.data.name == "wordnet":
    raise ValueError("job=teacher_report measures image teachers; the text teacher's job "
                     "writes its own report and samples.txt (job=teacher).")
  if int(config.get("report_examples", DEFAULT_EXAMPLES)) < 0:
    raise ValueError(f"report_examples={config.report_examples}: give a count, or 0 for the "
                     "whole split.")


def conditional_outputs(fns, params, images, labels, rng):
  """evaluation.teacher_outputs for a class-conditional G (teachers/diffusion.py): x' at σ is
  G(E(x) + σ·ε, c) under the class a student's tgt_random would use (the label, or T's
  argmax), so label_kept_at_sigma_σ is the label kept at each SDEdit strength."""
  z = fns.encode(params, images)
  recon = fns.decode(params, z)
  logits = fns.label(params, images)
  classes = jnp.argmax(logits, -1) if fns.condition_on_labeler else labels
  out = {"logits": logits, "recon_logits": fns.label(params, recon),
         "recon_sq_error": jnp.mean(jnp.square(recon - images), axis=tuple(range(1, images.ndim))),
         "recon": recon}
  for i, sigma in enumerate(evaluation.LABEL_KEPT_SIGMAS):
    noisy = fns.decode_conditional(params, tgt.random_latents(jax.random.fold_in(rng, i), z, sigma),
                                   classes, sigma)
    out[f"noisy_logits_{sigma}"] = fns.label(params, noisy)
    if sigma in GRID_SIGMAS:
      out[f"noisy_{sigma}"] = noisy
  return z, out


def make_figures(fns, mesh):
  """The jitted per-example outputs the report is computed from, sharded over the batch.
  A class-conditional G's prior samples are made under uniformly drawn classes."""
  conditional = fns.decode_conditional is not None

  def figures(params, images, labels, rng):
    if conditional:
      z, out = conditional_outputs(fns, params, images, labels, rng)
    else:
      z, out = evaluation.teacher_outputs(fns, params, images, rng, GRID_SIGMAS)
    prior_key = jax.random.fold_in(rng, len(evaluation.LABEL_KEPT_SIGMAS))
    noise = jax.random.normal(prior_key, z.shape)
    if conditional:
      classes = jax.random.randint(jax.random.fold_in(prior_key, 1), (z.shape[0],), 0,
                                   fns.num_classes)
      prior = fns.decode_conditional(params, noise, classes, float("inf"))
    else:
      prior = fns.decode(params, noise)
    out.update(prior=prior, prior_logits=fns.label(params, prior))
    return out

  rows, repl = sharding.batch_sharded(mesh), sharding.replicated(mesh)
  return jax.jit(figures, in_shardings=(repl, rows, rows, repl), out_shardings=rows)


IMAGES = ("image", "recon", "prior") + tuple(f"noisy_{s}" for s in GRID_SIGMAS)


def collect(figures, params, batches, mesh, num_examples, seed, image_rows=0):
  """Every output of `figures` for the first `num_examples` real rows (0: all), gathered;
  the pictures (IMAGES) of the first `image_rows` only (0: all), so 10,000 ImageNet rows do
  not hold 10,000 × 5 images in host memory."""
  out, seen = [], 0
  for i, batch in enumerate(batches):
    rng = jax.random.fold_in(jax.random.key(seed), i)
    labels = sharding.to_global(mesh, batch["label"])
    got = figures(params, sharding.to_global(mesh, batch["image"]), labels, rng)
    got.update(image=sharding.to_global(mesh, batch["image"]), label=labels,
               mask=sharding.to_global(mesh, batch["mask"]))
    got = jax.device_get(multihost_utils.process_allgather(got, tiled=True))
    keep = np.asarray(got.pop("mask"), bool)
    rows = {k: np.asarray(v)[keep] for k, v in got.items()}
    if image_rows:
      rows.update({k: rows[k][:max(0, image_rows - seen)] for k in IMAGES})
    out.append(rows)
    seen += int(keep.sum())
    if num_examples and seen >= num_examples:   # every process stops at the same batch
      break
  out = {k: np.concatenate([o[k] for o in out]) for k in out[0]}
  return {k: v[:num_examples] if num_examples else v for k, v in out.items()}


def summarize(out, num_classes, pixel_range):
  """The report's figures from collect's outputs."""
  low, high = pixel_range
  psnr = 10.0 * np.log10((high - low) ** 2 / np.maximum(out["recon_sq_error"], 1e-12))
  prior = np.asarray(out["prior_logits"], np.float64)
  prior = np.exp(prior - prior.max(-1, keepdims=True))
  prior /= prior.sum(-1, keepdims=True)
  entropy = -np.sum(prior * np.log(np.maximum(prior, 1e-30)), -1)
  return {**evaluation.teacher_report(out, out["label"], num_classes),
          "reconstruction_psnr_db": float(np.mean(psnr)),
          "reconstruction_mse": float(np.mean(out["recon_sq_error"])),
          "prior_label_entropy_nats": float(np.mean(entropy)),
          "prior_label_entropy_uniform_nats": float(np.log(num_classes)),
          "prior_classes_hit": int(len(np.unique(np.argmax(prior, -1)))),
          "num_examples": int(len(out["label"]))}


def grid(out, count, pixel_range):
  """Rows: real, E→G, σ = 0.5, σ = 1, prior samples; pixels mapped to [0, 1]."""
  low, high = pixel_range
  names = ["image", "recon"] + [f"noisy_{s}" for s in GRID_SIGMAS] + ["prior"]
  return metrics.image_grid([(out[name][:count] - low) / (high - low) for name in names])


def run(config, workdir):
  """Loads the teacher, measures it on the report split, writes results.json and the grid."""
  start = time.time()
  source = sources.make_source(config, with_subset=False)
  mesh = sharding.mesh_for(eval_batch_size=config.eval_batch_size)
  teacher = kinds.load_every_part(config, workdir, source, mesh)    # read, never trained here
  meta, params, fns = teacher.meta, teacher.params, teacher.functions
  split = config.get("report_split", "") or source.eval_split_names[0]
  num_examples = int(config.get("report_examples", DEFAULT_EXAMPLES))
  grid_examples = int(config.get("grid_examples", 8))
  out = collect(make_figures(fns, mesh), params,
                source.eval_batches(split, config.eval_batch_size), mesh, num_examples,
                config.seed, image_rows=grid_examples)
  report = summarize(out, source.num_classes, source.pixel_range)
  writer = metrics.MetricWriter(workdir)
  writer.image(0, "teacher_report", grid(out, grid_examples, source.pixel_range))
  writer.scalars(0, {f"teacher_report/{k}": v for k, v in report.items()
                     if isinstance(v, float)})
  writer.close()
  results = {"job": "teacher_report", "teacher_kind": config.teacher.get("kind", "") or "trained",
             "teacher": {k: v for k, v in meta.items() if k not in ("report", "checksums")},
             "teacher_identity": teacher.identity, "split": split,
             "seed": config.seed, "wall_time_sec": time.time() - start, **report}
  return artifacts.write_results(workdir, results)
