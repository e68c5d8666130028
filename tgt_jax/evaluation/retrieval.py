"""Dual-encoder retrieval: scores, in-batch loss and exact ranks.

A query (a gloss embedding) is scored against every document (a synset's
lemma-set embedding) with one matrix product; embeddings are L2-normalised by
the towers, so a score is a cosine divided by a temperature. Ranking runs on the
same data mesh as training: queries are batch-sharded, the document matrix is
replicated, and only the rank of the target leaves the device, so the full
[Q, N] score matrix is never materialised on the host.

The corpus is a *document index*: {"dense": [N, D]} for a dual encoder, plus
"tail_ids" / "tail_weights" [N, L] when documents also carry a sparse part (the
hybrid teacher's TF-IDF words). A query embedding is then [D + T]: its first D
entries meet "dense" and entry D + t meets every document word t, so a score is
still q·d, computed without the [N, T] document matrix (`index_scores`).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from tgt_jax import sharding
from tgt_jax.data import batches


def similarity(query_emb, doc_emb, temperature=1.0):
  """[Q, D] x [N, D] → [Q, N] scores q·dᵀ / τ."""
  return jnp.einsum("qd,nd->qn", query_emb, doc_emb,
                    preferred_element_type=jnp.float32) / temperature


def in_batch_softmax_loss(query_emb, doc_emb, temperature, doc_ids=None):
  """Mean over rows of −log softmax(scores)[i, i]: document i is row i's positive.

  Every other document of the batch is a negative, except that when `doc_ids`
  ([B]) says two rows share a document, those duplicate columns are removed
  from each other's denominator (the diagonal always stays): otherwise the loss
  would push a query away from a copy of its own positive.
  """
  scores = similarity(query_emb, doc_emb, temperature)
  if doc_ids is not None:
    same_doc = doc_ids[:, None] == doc_ids[None, :]
    duplicate = same_doc & ~jnp.eye(scores.shape[0], dtype=bool)
    scores = jnp.where(duplicate, -jnp.inf, scores)
  log_probs = jax.nn.log_softmax(scores, axis=-1)
  return -jnp.mean(jnp.diagonal(log_probs))


def index_of(doc_emb):
  """The document index of plain embeddings [N, D]."""
  return {"dense": doc_emb}


def index_scores(query_emb, index, chunk=2048):
  """[Q, N] scores q·d of queries [Q, D (+T)] against a document index (no temperature).

  A sparse tail is scored `chunk` documents at a time, so memory stays O(Q·chunk·L).
  """
  dense = index["dense"]
  width = dense.shape[1]
  scores = similarity(query_emb[:, :width], dense)
  if "tail_ids" not in index:
    return scores
  tail, num_docs = query_emb[:, width:], dense.shape[0]
  pad = -num_docs % chunk
  ids, weights = (jnp.pad(index[k], ((0, pad), (0, 0))).reshape(-1, chunk, index[k].shape[1])
                  for k in ("tail_ids", "tail_weights"))
  per_chunk = jax.lax.map(
      lambda iw: jnp.einsum("qcl,cl->qc", _take_columns(tail, iw[0]), iw[1]), (ids, weights))
  return scores + jnp.moveaxis(per_chunk, 0, 1).reshape(len(query_emb), -1)[:, :num_docs]


def _take_columns(x, ids):
  """x[:, ids] ([Q, *ids.shape]), keeping x's row sharding (a gather under a mesh needs it)."""
  layout = jax.typeof(x).sharding
  if layout.mesh.empty:
    return jnp.take(x, ids, axis=1)
  spec = jax.sharding.PartitionSpec(layout.spec[0] if layout.spec else None,
                                    *[None] * ids.ndim)
  return x.at[:, ids].get(out_sharding=jax.sharding.NamedSharding(layout.mesh, spec))


def target_ranks(scores, targets):
  """1-based rank of each row's target: 1 + #documents scoring strictly higher.

  Ties are resolved in the target's favour (a document with the same score does
  not push it down), so a rank never depends on document order. One comparison
  per score, no sort.
  """
  target_scores = jnp.take_along_axis(scores, targets[:, None], axis=-1)
  return 1 + jnp.sum(scores > target_scores, axis=-1, dtype=jnp.int32)


def make_ranker(mesh):
  """Jitted (queries [Q, D] sharded, document index replicated, targets [Q]) → ranks [Q].

  The temperature is left out: dividing by it cannot change a rank.
  """
  rows, everywhere = sharding.batch_sharded(mesh), sharding.replicated(mesh)
  return jax.jit(lambda queries, index, targets: target_ranks(index_scores(queries, index),
                                                             targets),
                 in_shardings=(rows, everywhere, rows), out_shardings=rows)


def _batched_on_mesh(fn, inputs, num_rows, batch_size, mesh):
  """fn(global batch) for every padded global batch of `inputs`, gathered, padding dropped.

  Every process runs the same number of batches and feeds its own rows, like
  `evaluation.predict`.
  """
  sharding.check_batch_size(batch_size, mesh)
  local = sharding.process_rows(batch_size)
  out = []
  for rows, valid in batches.eval_batches(num_rows, batch_size):
    batch = sharding.to_global(mesh, jax.tree.map(lambda x: np.asarray(x)[rows][local], inputs))
    result = multihost_utils.process_allgather(fn(batch), tiled=True)
    out.append(jax.tree.map(lambda x: np.asarray(x)[valid], result))
  return jax.tree.map(lambda *parts: np.concatenate(parts), *out)


def evaluate_ranks(ranker, query_emb, index, targets, batch_size, mesh):
  """Rank of the target document of every query (numpy [Q]), in query order."""
  docs = sharding.replicate(mesh, jax.tree.map(np.asarray, index))
  return _batched_on_mesh(lambda batch: ranker(batch["query"], docs, batch["target"]),
                          {"query": query_emb, "target": np.asarray(targets, np.int32)},
                          len(targets), batch_size, mesh)


def retrieval_report(ranks, ks=(1, 10)):
  """Recall@k, mean reciprocal rank and mean rank, as plain python numbers."""
  ranks = np.asarray(ranks, np.float64)
  out = {f"recall@{k}": float(np.mean(ranks <= k)) for k in ks}
  out["mrr"] = float(np.mean(1.0 / ranks))
  out["mean_rank"] = float(np.mean(ranks))
  out["num_queries"] = int(ranks.size)
  return out


def embed_all(embed_fn, params, inputs, batch_size, mesh):
  """embed_fn(params, batch) → [B, D] for every row of `inputs` (array or pytree), in order.

  Used to embed the whole document set once per evaluation; a pytree output
  (a document index) comes back as the same pytree of numpy arrays.
  """
  rows, everywhere = sharding.batch_sharded(mesh), sharding.replicated(mesh)
  embed = jax.jit(embed_fn, in_shardings=(everywhere, rows), out_shardings=rows)
  params = sharding.replicate(mesh, params)
  num_rows = len(jax.tree.leaves(inputs)[0])
  return _batched_on_mesh(lambda batch: embed(params, batch), inputs, num_rows, batch_size, mesh)


@functools.lru_cache(maxsize=16)
def _tower(model, tower):
  """One function object per (model, tower), so repeated evaluations reuse its compilation."""
  method = {"queries": "embed_queries", "documents": "embed_documents",
            "index": "index_documents"}[tower]
  return lambda params, tokens: model.apply(params, tokens, method=method)


_ranker = functools.lru_cache(maxsize=4)(make_ranker)


def embed(model, params, tokens, tower, batch_size, mesh):
  """Every row of `tokens` by tower "queries" or "documents" (numpy [N, D]), or "index"
  (the document index: a dict of numpy arrays)."""
  return embed_all(_tower(model, tower), params, tokens, batch_size, mesh)


def index_documents(model, params, tokens, batch_size, mesh):
  """The document index of every row of `tokens`."""
  return embed(model, params, tokens, "index", batch_size, mesh)


def ranks_of(query_emb, targets, index, batch_size, mesh):
  """Ranks (numpy [Q]) of embedded queries' targets against the index."""
  return evaluate_ranks(_ranker(mesh), query_emb, index, targets, batch_size, mesh)


def rank_report(model, params, queries, targets, index, batch_size, mesh):
  """Recall@1/10 and MRR of `queries` (token ids) ranked against every document."""
  query_emb = embed(model, params, queries, "queries", batch_size, mesh)
  return retrieval_report(ranks_of(query_emb, targets, index, batch_size, mesh))


def group_report(ranks, groups):
  """{group: retrieval_report of the ranks where the group's [Q] mask holds} (+ "all")."""
  ranks = np.asarray(ranks)
  out = {"all": retrieval_report(ranks)}
  for name, mask in groups.items():
    if np.any(mask):
      out[name] = retrieval_report(ranks[np.asarray(mask, bool)])
  return out


def best_documents(query_emb, index):
  """The best-scoring document of each query (numpy [Q]): a few queries, on the host's device."""
  return np.asarray(jnp.argmax(index_scores(jnp.asarray(query_emb),
                                            jax.tree.map(jnp.asarray, index)), axis=-1))


def mine_hard_negatives(query_emb, index, positive_keys, doc_keys, k, chunk=512):
  """Each query's k best-scoring documents whose lemma set is not its positive's ([Q, k]).

  Every process computes the same result (it is deterministic) in chunks of queries.
  """
  @jax.jit
  def top(queries, pos_keys, docs, keys):
    scores = index_scores(queries, docs)
    return jax.lax.top_k(jnp.where(keys[None, :] == pos_keys[:, None], -jnp.inf, scores), k)[1]

  docs, keys = jax.tree.map(jnp.asarray, index), jnp.asarray(doc_keys)
  out = []
  for start in range(0, len(query_emb), chunk):
    rows = np.minimum(np.arange(start, start + chunk), len(query_emb) - 1)   # fixed shape
    out.append(np.asarray(top(query_emb[rows], positive_keys[rows], docs, keys)))
  return np.concatenate(out)[:len(query_emb)].astype(np.int64)
