"""TGT for a dual encoder: a step's candidate documents play the classes.

A step's candidates are its B positive documents followed by the B·K hard
negatives the teacher mined for its queries. A query's "logits" are its scores
q·dᵀ/τ against every candidate and a labelled query's "label" is its positive's
column, so `tgt.tgt_loss` and `tgt.synthesize` run unchanged:
  ce            in-batch (+ hard negative) softmax on the labelled pairs
  kd            + α·KD between the teacher's and the student's candidate scores
  tgt_*         + λ·KD on queries the text VAE explores around the real ones
  kd_transfer   + λ·KD on real unlabelled train queries (the transfer-set ceiling)
A document that appears twice among the candidates (the same lemma set) keeps
only its first column, for every query: nobody is pushed away from a copy of its
own positive, and no document counts twice in a denominator. With K = 0 and no
repeats, the CE is exactly retrieval.in_batch_softmax_loss.

The teacher is a *scorer*: embed_queries(params, queries) and
embed_candidates(params, candidates). A dual encoder embeds the candidates'
tokens with its document tower; a zero-shot sentence encoder
(teachers/text_encoder.Scorer) reads its stored embeddings by the candidates'
document rows.
"""

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from tgt_jax import losses, sharding, tgt
from tgt_jax.evaluation import retrieval

REMOVED = -1e9                   # score of a repeated candidate: finite, so KD stays 0·finite


class Candidates(NamedTuple):
  tokens: jax.Array              # [C, doc_len]: the B positives, then the B·K negatives
  bias: jax.Array                # [C]: 0, or REMOVED for a repeat of an earlier column
  labels: jax.Array              # [B]: each query's positive column (its first copy)
  ids: jax.Array = None          # [C]: the candidates' document rows, when the batch has them


def candidates(batch):
  """The candidate documents of a batch (see the module docstring)."""
  tokens, keys, ids = batch["positive"], batch["positive_key"], batch.get("positive_id")
  if "negatives" in batch:
    negatives = batch["negatives"]
    tokens = jnp.concatenate([tokens, negatives.reshape(-1, negatives.shape[-1])])
    keys = jnp.concatenate([keys, batch["negative_key"].reshape(-1)])
    ids = (jnp.concatenate([ids, batch["negative_id"].reshape(-1)])
           if ids is not None and "negative_id" in batch else None)
  keys = sharding.gathered(keys)
  first = jnp.argmax(keys[:, None] == keys[None, :], axis=1)
  bias = jnp.where(first == jnp.arange(keys.shape[0]), 0.0, REMOVED)
  return Candidates(tokens, bias, first[:batch["positive"].shape[0]], ids)


def candidate_scores(query_emb, doc_emb, cands, temperature):
  """[Q, C] scores q·dᵀ/τ of queries against the candidates, repeats removed."""
  return retrieval.similarity(query_emb, sharding.gathered(doc_emb), temperature) + cands.bias


class DualEncoderScorer:
  """A dual encoder (a Flax module) as a scorer: both towers."""

  def __init__(self, model):
    self.model = model

  def embed_queries(self, params, queries):
    return self.model.apply(params, queries, method="embed_queries")

  def embed_candidates(self, params, cands):
    return self.model.apply(params, cands.tokens, method="embed_documents")


def as_scorer(model):
  """A scorer of a dual encoder module, or the scorer itself (a zero-shot teacher's)."""
  return model if hasattr(model, "embed_candidates") else DualEncoderScorer(model)


def scorer_of(model, cands, temperature, params_key=None):
  """(params, queries) → candidate scores: a dual encoder or scorer as tgt's `student_apply` /
  label.

  `params_key` picks the model's parameters out of a larger tree (the teacher's).
  """
  pick = (lambda p: p[params_key]) if params_key else (lambda p: p)
  scorer = as_scorer(model)

  def apply(params, queries):
    docs = scorer.embed_candidates(pick(params), cands)
    return candidate_scores(scorer.embed_queries(pick(params), queries), docs, cands,
                            temperature)

  return apply


def no_generator():
  """The tgt.Teacher of kd / kd_transfer: a labeler only (its label is set per step)."""
  return tgt.Teacher(encode=None, decode=None, label=None, latent_dim=0, pixel_range=(0.0, 1.0))


def step_teacher(generator_fns, scorer, cands, temperature):
  """The text VAE's E and G with T = the scorer's scores against this step's candidates.

  Teacher parameters are {"generator": VAE, "scorer": dual encoder}.
  """
  return dataclasses.replace(generator_fns, label=scorer_of(scorer, cands, temperature, "scorer"))


def _targets_batch(batch, cands):
  out = {"image": batch["query"], "label": cands.labels}
  if "transfer" in batch:
    out["transfer"] = batch["transfer"]
  return out


def make_train_step(model, tx, cfg, scorer, generator_fns, temperature, mesh):
  """The jitted, sharded update: (state, teacher_params, batch, rng) → (state, terms).

  `scorer` is None when the method needs no teacher scores (ce).
  """

  def train_step(state, teacher_params, batch, rng):
    rng = jax.random.fold_in(rng, state.step)
    cands = candidates(batch)
    student_apply = scorer_of(model, cands, temperature)
    teacher_fns = (step_teacher(generator_fns, scorer, cands, temperature)
                   if scorer is not None else None)
    tbatch = _targets_batch(batch, cands)
    targets = tgt.teacher_targets(rng, cfg, teacher_fns, teacher_params, student_apply,
                                  state.params, tbatch)
    state, terms = tgt.student_update(state, tx, student_apply, cfg, tbatch, targets)
    terms["distinct_candidates"] = jnp.sum(cands.bias == 0).astype(jnp.float32)
    return state, terms

  repl = sharding.replicated(mesh)
  return jax.jit(train_step, in_shardings=(repl, repl, sharding.batch_sharded(mesh), repl),
                 out_shardings=(repl, repl), donate_argnums=(0,))


def make_probe(model, cfg, scorer, generator_fns, temperature, mesh, num_examples):
  """(state, teacher_params, batch, rng) → (stats, samples) of the step at state.step.

  It reproduces the train step's own explored queries (same key). Samples carry
  the teacher's query embeddings, so the caller can name the teacher's best
  document among all of them.
  """

  def probe(state, teacher_params, batch, rng):
    rng = jax.random.fold_in(rng, state.step)
    cands = candidates(batch)
    student_apply = scorer_of(model, cands, temperature)
    teacher_fns = step_teacher(generator_fns, scorer, cands, temperature)
    queries = batch["query"]
    explored = tgt.synthesize(rng, cfg, teacher_fns, teacher_params, student_apply,
                              state.params, queries, batch.get("transfer"))

    def discrepancy(x):
      return jnp.mean(losses.kl_divergence(teacher_fns.label(teacher_params, x),
                                           student_apply(state.params, x), cfg.temperature))

    teacher_syn = teacher_fns.label(teacher_params, explored)
    stats = {"discrepancy_real": discrepancy(queries),
             "discrepancy_after_exploration": discrepancy(explored),
             "teacher_entropy_synthetic": jnp.mean(losses.entropy(teacher_syn)),
             "teacher_confidence_synthetic": jnp.mean(jnp.max(jax.nn.softmax(teacher_syn), -1))}
    n, m = num_examples, cfg.num_samples
    first = lambda x, rows: sharding.gathered(x)[:rows]      # a few rows: any number, on any mesh
    embed = lambda x: as_scorer(scorer).embed_queries(teacher_params["scorer"], x)
    samples = {"real": first(queries, n), "explored": first(explored, n * m),
               "positive_id": first(batch["positive_id"], n)}
    samples.update(real_embedding=embed(samples["real"]),
                   explored_embedding=embed(samples["explored"]))
    if generator_fns.encode is not None:
      decoded = teacher_fns.decode(teacher_params, teacher_fns.encode(teacher_params, queries))
      stats["discrepancy_before_exploration"] = discrepancy(decoded)
      samples["decoded"] = first(decoded, n)
    return stats, samples

  repl = sharding.replicated(mesh)
  return jax.jit(probe, in_shardings=(repl, repl, sharding.batch_sharded(mesh), repl),
                 out_shardings=repl)
