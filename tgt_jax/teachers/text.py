"""The text teacher: the sequence VAE's objective, its quality figures, decoded samples.

The figures answer the questions asked of an image teacher (teachers/training.py), in tokens:
how much of a gloss survives E→G (token accuracy, exact matches), does the
labeler still recognise the reconstructions, and how often does its label
survive z = E(x) + σ·ε. Samples files put real glosses, their reconstructions and
explored neighbours side by side, with the labeler's category for each.
"""

import jax
import jax.numpy as jnp
import numpy as np

from tgt_jax import losses, sharding
from tgt_jax.teachers import generative
from tgt_jax.evaluation import classification as evaluation

LABEL_KEPT_SIGMAS = evaluation.LABEL_KEPT_SIGMAS
_CHUNK = 256                       # rows per jitted call: [rows, L, V] logits stay small


def token_nll(logits, tokens):
  """Per-example negative log-likelihood of every position (padding too: it sets the length)."""
  log_p = jax.nn.log_softmax(logits.astype(jnp.float32))
  return -jnp.sum(jnp.take_along_axis(log_p, tokens[..., None], axis=-1)[..., 0], axis=-1)


def sequence_vae_loss(generator, tconfig):
  """Negative ELBO of the sequence VAE (categorical likelihood, β·KL after a warm-up), for fit."""

  def loss(params, batch, rng, step):
    tokens = batch["image"]
    logits, mean, logvar = generator.apply(params, tokens, rng)
    nll = token_nll(logits, tokens)
    kl = losses.gaussian_kl(mean, logvar)
    warmup = jnp.minimum(1.0, (step + 1) / max(tconfig.kl_warmup_steps, 1))
    real = tokens != 0
    token_accuracy = jnp.sum((jnp.argmax(logits, -1) == tokens) & real) / jnp.maximum(
        jnp.sum(real), 1)
    return jnp.mean(nll + tconfig.beta * warmup * kl), {
        "recon_nll": jnp.mean(nll), "kl_nats": jnp.mean(kl), "token_accuracy": token_accuracy}

  return loss


def _figures_fn(meta, mesh):
  fns = generative.as_functions(meta)
  generator, _ = generative.build_modules(meta)

  def figures(params, tokens, rng):
    mean, logvar = generator.apply(params["generator"], tokens, method=generator.encode)
    recon = fns.decode(params, mean)
    real = tokens != 0
    out = {"logits": fns.label(params, tokens), "recon_logits": fns.label(params, recon),
           "recon": recon,
           "tokens_right": jnp.sum((recon == tokens) & real, -1), "tokens": jnp.sum(real, -1),
           "exact": jnp.all(recon == tokens, -1),
           "kl_nats": losses.gaussian_kl(mean, logvar)}
    for i, sigma in enumerate(LABEL_KEPT_SIGMAS):
      noisy = fns.decode(params, mean + sigma * jax.random.normal(jax.random.fold_in(rng, i),
                                                                  mean.shape))
      out[f"noisy_logits_{sigma}"] = fns.label(params, noisy)
      out[f"noisy_{sigma}"] = noisy
    return out

  repl = sharding.replicated(mesh)
  return jax.jit(figures, in_shardings=(repl, repl, repl), out_shardings=repl)


def teacher_outputs(meta, params, tokens, mesh, seed=0):
  """The figures' raw outputs for every row of `tokens`, in chunks."""
  figures = _figures_fn(meta, mesh)
  params = sharding.replicate(mesh, params)
  chunks = []
  for i, start in enumerate(range(0, len(tokens), _CHUNK)):
    chunk = jnp.asarray(tokens[start:start + _CHUNK])
    chunks.append(jax.device_get(figures(params, chunk, jax.random.key(seed + i))))
  return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


def evaluate(meta, params, split, mesh, seed=0):
  """The teacher's quality figures on `split` (a prefix of the first eval split)."""
  out = teacher_outputs(meta, params, split.images, mesh, seed)
  labels, num_classes = split.labels, meta["num_classes"]
  truth = np.argmax(out["logits"], -1)
  return {**evaluation.teacher_report(out, labels, num_classes),
          "labeler_test_plain_accuracy": float(np.mean(truth == labels)),
          "labeler_test_macro_f1": evaluation.macro_f1(truth, labels, num_classes),
          "reconstruction_token_accuracy": float(out["tokens_right"].sum() / out["tokens"].sum()),
          "reconstruction_exact_match": float(np.mean(out["exact"]))}


def format_samples(vocabulary, class_names, rows):
  """Text of a samples file: one block per real gloss.

  `rows` is a list of dicts with 'real', 'decoded' (token id arrays), 'explored'
  (a list of (token ids, label id) pairs) and optionally 'label' (the true category).
  """
  def text(ids):
    words = []
    for i in np.asarray(ids).tolist():
      if i == 0:
        break
      words.append(vocabulary[i])
    return " ".join(words)

  blocks = []
  for n, row in enumerate(rows):
    label = f"  [{class_names[row['label']]}]" if row.get("label") is not None else ""
    lines = [f"#{n}{label}", f"  real     | {text(row['real'])}",
             f"  decoded  | {text(row['decoded'])}"]
    lines += [f"  explored | {text(ids)}  → {class_names[int(y)]}" for ids, y in row["explored"]]
    blocks.append("\n".join(lines))
  return "\n\n".join(blocks) + "\n"


def teacher_samples(meta, params, split, mesh, vocabulary, class_names, num=16, seed=0):
  """Samples file of the teacher job: real | decoded | E(x)+σ·ε decoded, for each σ."""
  out = teacher_outputs(meta, params, split.images[:num], mesh, seed)
  rows = []
  for i in range(min(num, len(split))):
    explored = [(out[f"noisy_{s}"][i], np.argmax(out[f"noisy_logits_{s}"][i]))
                for s in LABEL_KEPT_SIGMAS]
    rows.append({"real": split.images[i], "decoded": out["recon"][i], "explored": explored,
                 "label": int(split.labels[i])})
  header = ("# real | decoded = G(E(x)) | explored = G(E(x) + σ·ε) for σ in "
            f"{list(LABEL_KEPT_SIGMAS)}, each with the labeler's category\n\n")
  return header + format_samples(vocabulary, class_names, rows)
