"""The pretrained-student baseline: masked-token pretraining on unlabelled text.

The paper's comparison point for text (§4.3): the student's own architecture,
pretrained without labels on every training gloss, then fine-tuned on the few
labels (`config.student.init_from`). TGT is meant to match it from scratch.
The pretraining job saves `params/` and `pretrained.json` like a teacher does
(tasks/pretrained_student.py: the format, and how a student starts from it).
"""

import math
import time

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from tgt_jax import losses, models, sharding
from tgt_jax.data import sources
from tgt_jax.engine import artifacts
from tgt_jax.tasks import pretrained_student
from tgt_jax.teachers import generative, training

MASK = 2                       # the vocabulary's <mask> token (data/wordnet.py)


def mask_tokens(rng, tokens, rate):
  """Masks max(1, round(rate · length)) random real tokens of each sequence.

  Returns (inputs with <mask> there, positions [B, K], valid [B, K]): K = the most
  any sequence can get, so the loss projects K positions, not all L, onto the vocabulary.
  """
  length = jnp.sum(tokens != 0, axis=1)
  k = max(1, math.ceil(rate * tokens.shape[1]))
  scores = jnp.where(tokens != 0, jax.random.uniform(rng, tokens.shape), -1.0)
  _, positions = jax.lax.top_k(scores, k)
  wanted = jnp.maximum(1, jnp.round(rate * length)).astype(jnp.int32)
  valid = (jnp.arange(k) < wanted[:, None]) & (jnp.arange(k) < length[:, None])
  picks = (positions[..., None] == jnp.arange(tokens.shape[1])) & valid[..., None]  # [B, K, L]
  chosen = jnp.any(picks, axis=1)        # comparisons, not a scatter: shards like the batch
  return jnp.where(chosen, MASK, tokens), positions, valid


def masked_token_loss(student, rate):
  """Cross-entropy of the original token at the masked positions, for training.fit."""

  def loss(params, batch, rng, step):
    del step
    tokens = batch["image"]
    inputs, positions, valid = mask_tokens(rng, tokens, rate)
    logits = student.apply(params, inputs, positions, method=student.mlm_logits)
    targets = jnp.sum(jax.nn.one_hot(positions, tokens.shape[1], dtype=jnp.int32)
                      * tokens[:, None, :], axis=-1)
    weights = valid.astype(jnp.float32)
    ce = losses.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                              weights.reshape(-1))
    hits = (jnp.argmax(logits, -1) == targets) & valid
    return ce, {"masked_accuracy": jnp.sum(hits) / jnp.maximum(jnp.sum(weights), 1.0)}

  return loss


def pretrained_dir(config, workdir):
  return config.pretrain.get("dir") or str(epath.Path(workdir) / "pretrained")


def run_pretrain_job(config, workdir):
  """Pretrains config.student.model with masked tokens on the whole train split (no labels)."""
  start = time.time()
  source = sources.make_source(config, with_subset=False)
  if source.vocabulary is None:
    raise ValueError(f"The pretrain job reads text; config.data.name={config.data.name!r} is not "
                     "a text dataset.")
  mesh = sharding.make_mesh()
  student = models.classifier(config.student.model, source.num_classes,
                              config.student.get("dtype") or None,
                              vocab_size=len(source.vocabulary))
  if not hasattr(student, "mlm_logits"):
    raise ValueError(f"Student model {config.student.model!r} has no masked-token head; "
                     "pretrain a transformer (e.g. text_transformer).")
  pcfg = config.pretrain
  params = student.init(jax.random.key(config.seed),
                        jnp.zeros((1, *source.image_shape), source.input_dtype))
  loss_fn = masked_token_loss(student, pcfg.mask_rate)
  directory = pretrained_dir(config, workdir)
  with artifacts.writing(directory, "pretrained student", config_key="pretrain.dir"):
    params = training.fit(loss_fn, params,
                          lambda start: source.teacher_batches(pcfg.batch_size, config.seed,
                                                               start),
                          steps=pcfg.steps, batch_size=pcfg.batch_size,
                          learning_rate=pcfg.learning_rate, seed=config.seed, mesh=mesh,
                          name="pretrain", run_dir=training.run_dir_of(directory))
    validation = source.sample("validation", training.REPORT_EXAMPLES)
    accuracy = _masked_accuracy(loss_fn, params, validation.images, config.seed)
    meta = {"model": config.student.model, "vocab_size": len(source.vocabulary),
            "vocabulary_fingerprint": generative.vocabulary_fingerprint(source.vocabulary),
            "steps": int(pcfg.steps), "mask_rate": float(pcfg.mask_rate),
            "validation_masked_accuracy": accuracy}
    artifacts.save_params_then_json(directory, params, pretrained_student.META_FILE,
                                    meta)
  results = {"job": "pretrain", "pretrained_dir": directory, "seed": config.seed,
             "wall_time_sec": time.time() - start, **meta}
  return artifacts.write_results(workdir, results)


def _masked_accuracy(loss_fn, params, tokens, seed, chunk=256):
  fn = jax.jit(lambda p, t, r: loss_fn(p, {"image": t}, r, 0)[1]["masked_accuracy"])
  scores = [float(fn(params, jnp.asarray(tokens[i:i + chunk]), jax.random.key(seed + i)))
            for i in range(0, len(tokens), chunk)]
  return float(np.mean(scores))
