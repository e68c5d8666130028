"""The teacher job: train the generator (VAE: E and G) and the labeler T, then save them.

Both are trained data-parallel on the same mesh as the student. The job
reports what decides TGT's quality (DESIGN §3.1): the labeler's balanced test
accuracy, the VAE's reconstruction error and KL (nats), the labeler's accuracy
on E→G reconstructions and how often a label survives z = E(x) + σ·ε.
"""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tgt_jax import evaluation, losses, sharding, teacher, text_teacher
from tgt_jax.data import sources

LABEL_KEPT_SIGMAS = (0.25, 0.5, 1.0, 2.0)
REPORT_EXAMPLES = 2048       # teacher figures of a TFDS dataset: its first eval split's first n


def fit(loss_fn, params, data, *, steps, batch_size, learning_rate, seed, mesh, name,
        log_every=500):
  """Adam with cosine decay on `loss_fn(params, batch, rng, step) -> (loss, aux)`.

  `data` is an in-memory split (batches drawn by (seed, step)) or an iterator of this
  process's rows of each global batch (a TFDS stream).
  """
  sharding.check_batch_size(batch_size, mesh, "teacher.batch_size")
  tx = optax.adam(optax.cosine_decay_schedule(learning_rate, max(steps, 1)))
  repl, rows_sharded = sharding.replicated(mesh), sharding.batch_sharded(mesh)

  def step_fn(params, opt_state, batch, rng, step):
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, batch, jax.random.fold_in(rng, step), step)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, {"loss": loss, **aux}

  step_fn = jax.jit(step_fn, in_shardings=(repl, repl, rows_sharded, repl, repl),
                    out_shardings=repl, donate_argnums=(0, 1))
  params = sharding.replicate(mesh, params)
  opt_state = sharding.replicate(mesh, tx.init(params))
  rng = jax.random.key(seed)
  stream = sources.split_stream(data, batch_size, seed) if hasattr(data, "images") else iter(data)
  for step in range(steps):
    batch = next(stream)
    batch = sharding.to_global(mesh, {"image": batch["image"], "label": batch["label"]})
    params, opt_state, aux = step_fn(params, opt_state, batch, rng, step)
    if (step + 1) % log_every == 0 or step + 1 == steps:
      aux = jax.device_get(aux)
      logging.info("%s step %d/%d | %s", name, step + 1, steps,
                   " ".join(f"{k}={float(v):.4g}" for k, v in aux.items()))
      if not all(np.isfinite(float(v)) for v in aux.values()):
        raise FloatingPointError(f"{name} training diverged at step {step + 1}: {aux}")
  return params


def labeler_loss(labeler):
  """Cross-entropy of the labeler module on a labelled batch, for `fit`."""

  def loss(params, batch, rng, step):
    del rng, step
    logits = labeler.apply(params, batch["image"])
    return losses.cross_entropy(logits, batch["label"]), {
        "accuracy": losses.accuracy(logits, batch["label"])}

  return loss


def train(tconfig, dataset, mesh, seed=0):
  """Trains generator and labeler on the full train split; returns (meta, params, report).

  `dataset` is an in-memory data.Dataset or a data.sources source (TFDS streams).
  """
  meta = dict(generator=tconfig.generator, labeler=tconfig.labeler,
              latent_dim=int(tconfig.latent_dim), image_shape=list(dataset.image_shape),
              num_classes=int(dataset.num_classes), pixel_range=list(dataset.pixel_range))
  is_text = getattr(dataset, "vocabulary", None) is not None
  if is_text:
    meta.update(vocab_size=len(dataset.vocabulary), input_dtype="int32",
                vocabulary_fingerprint=teacher.vocabulary_fingerprint(dataset.vocabulary))
  generator, labeler = teacher.build_modules(meta)
  params = teacher.init_params(meta, jax.random.key(tconfig.seed + seed))
  common = dict(batch_size=tconfig.batch_size, learning_rate=tconfig.learning_rate,
                seed=tconfig.seed + seed, mesh=mesh)
  if hasattr(dataset, "teacher_batches"):
    train_data = lambda: dataset.teacher_batches(tconfig.batch_size, tconfig.seed + seed)
    report_split = dataset.sample(dataset.eval_split_names[0], REPORT_EXAMPLES)
  else:
    train_data = lambda: dataset.splits["train"]
    report_split = dataset.splits["test"]

  def image_vae_loss(p, batch, rng, step):
    warmup = jnp.minimum(1.0, (step + 1) / max(tconfig.kl_warmup_steps, 1))
    recon, mean, logvar = generator.apply(p, batch["image"], rng)
    loss, nll, kl = losses.gaussian_vae_loss(batch["image"], recon, mean, logvar,
                                             tconfig.pixel_sigma, tconfig.beta * warmup)
    return loss, {"recon_nll": nll, "kl_nats": kl}

  vae_loss = (text_teacher.sequence_vae_loss(generator, tconfig) if is_text else image_vae_loss)
  params["generator"] = fit(vae_loss, params["generator"], train_data(),
                            steps=tconfig.generator_steps, name="generator", **common)
  params["labeler"] = fit(labeler_loss(labeler), params["labeler"], train_data(),
                          steps=tconfig.labeler_steps, name="labeler", **common)
  report = (text_teacher.evaluate if is_text else evaluate)(meta, params, report_split, mesh)
  return meta, params, report


def evaluate(meta, params, split, mesh, seed=0):
  """The teacher's quality figures on `split` (the test split in the job)."""
  fns = teacher.as_functions(meta)
  generator, _ = teacher.build_modules(meta)
  repl = sharding.replicated(mesh)

  @jax.jit
  def figures(params, images, rng):
    mean, logvar = generator.apply(params["generator"], images, method=generator.encode)
    recon = fns.decode(params, mean)
    out = {"logits": fns.label(params, images), "recon_logits": fns.label(params, recon),
           "recon_sq_error": jnp.mean(jnp.square(recon - images), axis=(1, 2, 3)),
           "kl_nats": 0.5 * jnp.sum(jnp.exp(logvar) + mean**2 - 1.0 - logvar, axis=-1)}
    for i, sigma in enumerate(LABEL_KEPT_SIGMAS):
      noisy = fns.decode(params, mean + sigma * jax.random.normal(
          jax.random.fold_in(rng, i), mean.shape))
      out[f"noisy_logits_{sigma}"] = fns.label(params, noisy)
    return out

  params = sharding.replicate(mesh, params)
  out = jax.device_get(figures(params, jnp.asarray(split.images), jax.random.key(seed)))
  labels, num_classes = split.labels, meta["num_classes"]
  truth = np.argmax(out["logits"], -1)   # the labeler's own label, for "label kept"
  report = {
      "labeler_test_accuracy": evaluation.balanced_accuracy(truth, labels, num_classes),
      "labeler_accuracy_on_reconstructions": evaluation.balanced_accuracy(
          np.argmax(out["recon_logits"], -1), labels, num_classes),
      "reconstruction_mse": float(np.mean(out["recon_sq_error"])),
      "latent_kl_nats": float(np.mean(out["kl_nats"])),
  }
  for sigma in LABEL_KEPT_SIGMAS:
    kept = np.argmax(out[f"noisy_logits_{sigma}"], -1) == truth
    report[f"label_kept_at_sigma_{sigma}"] = float(np.mean(kept))
  return report
