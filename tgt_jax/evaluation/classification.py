"""Evaluation on a balanced split: overall, per-class and head/medium/tail accuracy.

Prediction runs on the same data mesh as training: the split is cut into
global batches padded to full size (every process runs the same number of
batches), and padded rows are dropped before counting.
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from tgt_jax import sharding
from tgt_jax.data import batches


def per_class_accuracy(predictions, labels, num_classes):
  return [float(np.mean(predictions[labels == c] == c)) if np.any(labels == c) else float("nan")
          for c in range(num_classes)]


def balanced_accuracy(predictions, labels, num_classes):
  """Mean of per-class accuracies (equal to plain accuracy on a balanced split)."""
  return float(np.nanmean(per_class_accuracy(predictions, labels, num_classes)))


def macro_f1(predictions, labels, num_classes):
  """Mean over classes present in `labels` of F1 = 2·precision·recall / (precision + recall)."""
  scores = []
  for c in range(num_classes):
    true_c, pred_c = labels == c, predictions == c
    if not np.any(true_c):
      continue
    hits = np.sum(true_c & pred_c)
    scores.append(2.0 * hits / (np.sum(true_c) + np.sum(pred_c)))
  return float(np.mean(scores)) if scores else float("nan")


def make_predict(apply_fn, mesh):
  return jax.jit(lambda params, images: jnp.argmax(apply_fn(params, images), -1),
                 in_shardings=(sharding.replicated(mesh), sharding.batch_sharded(mesh)),
                 out_shardings=sharding.batch_sharded(mesh))


def predict(predict_fn, params, split, batch_size, mesh):
  """Predicted class of every example of `split`, in order."""
  local = sharding.process_rows(batch_size)
  out = []
  for rows, valid in batches.eval_batches(len(split), batch_size):
    images = sharding.to_global(mesh, split.images[rows][local])
    preds = multihost_utils.process_allgather(predict_fn(params, images), tiled=True)
    out.append(np.asarray(preds)[valid])
  return np.concatenate(out)


def evaluate(predict_fn, params, batches, num_classes, groups, mesh):
  """The report of a split given as padded batches {"image", "label", "mask"} of this process.

  Every process runs the same number of batches; masked (padding) rows are dropped
  after gathering, so the figures count every example of the split exactly once.
  """
  preds, labels = [], []
  for batch in batches:
    out = predict_fn(params, sharding.to_global(mesh, batch["image"]))
    gathered = multihost_utils.process_allgather(
        {"pred": out, "label": sharding.to_global(mesh, batch["label"]),
         "mask": sharding.to_global(mesh, batch["mask"])}, tiled=True)
    keep = np.asarray(gathered["mask"], bool)
    preds.append(np.asarray(gathered["pred"])[keep])
    labels.append(np.asarray(gathered["label"])[keep])
  return report(np.concatenate(preds), np.concatenate(labels), num_classes, groups)


def report(predictions, labels, num_classes, groups):
  """The accuracy figures written to results.json."""
  per_class = per_class_accuracy(predictions, labels, num_classes)
  out = {"accuracy": float(np.mean(predictions == labels)),
         "balanced_accuracy": float(np.nanmean(per_class)),
         "macro_f1": macro_f1(predictions, labels, num_classes),
         "per_class_accuracy": per_class}
  for name, classes in groups.items():
    seen = [per_class[c] for c in classes if not np.isnan(per_class[c])]
    out[f"{name}_accuracy"] = float(np.mean(seen)) if seen else float("nan")
  return out


LABEL_KEPT_SIGMAS = (0.25, 0.5, 1.0, 2.0)


def teacher_outputs(fns, params, images, rng, image_sigmas=()):
  """(z, per-example outputs) teacher_report reads, for a teacher's E, G, T as pure functions
  `fns`: T on x and on E→G, E→G's squared error, T at z = E(x) + σ·ε for each σ of
  LABEL_KEPT_SIGMAS (key fold_in(rng, i)), with the decoded images of the σ in image_sigmas
  and of E→G ("recon")."""
  z = fns.encode(params, images)
  recon = fns.decode(params, z)
  out = {"logits": fns.label(params, images), "recon_logits": fns.label(params, recon),
         "recon_sq_error": jnp.mean(jnp.square(recon - images), axis=tuple(range(1, images.ndim))),
         "recon": recon}
  for i, sigma in enumerate(LABEL_KEPT_SIGMAS):
    noisy = fns.decode(params, z + sigma * jax.random.normal(jax.random.fold_in(rng, i), z.shape))
    out[f"noisy_logits_{sigma}"] = fns.label(params, noisy)
    if sigma in image_sigmas:
      out[f"noisy_{sigma}"] = noisy
  return z, out


def teacher_report(out, labels, num_classes):
  """The figures asked of every generative teacher, image or text, from its raw outputs.

  Does the labeler know the real inputs (`logits`) and their E→G reconstructions
  (`recon_logits`); how much does the latent carry (`kl_nats`, a trained VAE's only); how
  often does the labeler's own label survive z = E(x) + σ·ε (`noisy_logits_{σ}` for σ in
  LABEL_KEPT_SIGMAS).
  """
  truth = np.argmax(out["logits"], -1)   # the labeler's own label, for "label kept"
  report = {
      "labeler_test_accuracy": balanced_accuracy(truth, labels, num_classes),
      "labeler_accuracy_on_reconstructions": balanced_accuracy(
          np.argmax(out["recon_logits"], -1), labels, num_classes),
  }
  if "kl_nats" in out:
    report["latent_kl_nats"] = float(np.mean(out["kl_nats"]))
  for sigma in LABEL_KEPT_SIGMAS:
    kept = np.argmax(out[f"noisy_logits_{sigma}"], -1) == truth
    report[f"label_kept_at_sigma_{sigma}"] = float(np.mean(kept))
  return report
