"""Retrieval metrics against brute force on the 8-device mesh, and the losses against numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tgt_jax import sharding
from tgt_jax.evaluation import retrieval


@pytest.fixture(scope="module")
def mesh():
  assert jax.device_count() == 8
  return sharding.make_mesh()


def _normalise(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _brute_force_ranks(queries, docs, targets):
  """Position of the target after sorting all documents, ties broken in the target's favour."""
  scores = queries.astype(np.float64) @ docs.astype(np.float64).T
  ranks = []
  for row, target in zip(scores, targets):
    is_other = np.arange(len(row)) != target
    order = np.lexsort((is_other, -row))  # last key is primary: score, then target first.
    ranks.append(int(np.flatnonzero(order == target)[0]) + 1)
  return np.array(ranks)


def _brute_force_report(ranks, ks):
  out = {f"recall@{k}": np.mean(ranks <= k) for k in ks}
  out["mrr"] = np.mean(1.0 / ranks)
  return out


def test_ranks_and_report_match_brute_force(mesh):
  rng = np.random.default_rng(0)
  queries = _normalise(rng.normal(size=(37, 8))).astype(np.float32)
  docs = _normalise(rng.normal(size=(101, 8))).astype(np.float32)
  targets = rng.integers(0, 101, size=37)
  ranks = retrieval.evaluate_ranks(retrieval.make_ranker(mesh), queries, retrieval.index_of(docs),
                                   targets, 16, mesh)
  expected = _brute_force_ranks(queries, docs, targets)
  np.testing.assert_array_equal(ranks, expected)
  assert ranks.shape == (37,) and ranks.min() >= 1 and ranks.max() > 10
  report = retrieval.retrieval_report(ranks, ks=(1, 5, 10))
  for key, value in _brute_force_report(expected, (1, 5, 10)).items():
    assert report[key] == pytest.approx(value), key
  assert report["mean_rank"] == pytest.approx(expected.mean())
  assert report["num_queries"] == 37
  assert all(type(v) is float for k, v in report.items() if k != "num_queries")


def test_exact_ties_resolve_in_the_targets_favour(mesh):
  # Small integers: every dot product is exact, so the ties are exact on any backend.
  rng = np.random.default_rng(1)
  docs = rng.integers(-3, 4, size=(101, 8)).astype(np.float32)
  docs[50:60] = docs[7]  # Ten copies of document 7.
  docs[90] = docs[3]
  queries = rng.integers(-3, 4, size=(37, 8)).astype(np.float32)
  targets = rng.integers(0, 101, size=37)
  targets[:6] = [7, 55, 59, 3, 90, 50]
  queries[1:3] = queries[5] = queries[0]
  queries[4] = queries[3]
  ranks = retrieval.evaluate_ranks(retrieval.make_ranker(mesh), queries, retrieval.index_of(docs),
                                   targets, 16, mesh)
  np.testing.assert_array_equal(ranks, _brute_force_ranks(queries, docs, targets))
  # Copies of a document share its rank: 1 + #strictly better, whichever copy is the target.
  assert ranks[0] == ranks[1] == ranks[2] == ranks[5]
  assert ranks[3] == ranks[4]
  scores = queries[0] @ docs.T
  assert ranks[0] == 1 + np.sum(scores > scores[7])
  # The rule is exercised: many targets tie with other documents (integer scores).
  all_scores = queries @ docs.T
  target_scores = all_scores[np.arange(37), targets]
  assert np.sum(np.sum(all_scores == target_scores[:, None], -1) > 1) > 10


def test_perfect_scorer_ranks_first():
  scores = jnp.asarray(np.random.default_rng(2).normal(size=(12, 30)), jnp.float32)
  targets = jnp.argmax(scores, -1)
  np.testing.assert_array_equal(retrieval.target_ranks(scores, targets), np.ones(12))
  # Identical queries and documents: each document is its own best match.
  emb = _normalise(np.random.default_rng(3).normal(size=(20, 6))).astype(np.float32)
  ranks = retrieval.target_ranks(retrieval.similarity(emb, emb, 0.05), jnp.arange(20))
  np.testing.assert_array_equal(ranks, np.ones(20))


def _numpy_in_batch_loss(queries, docs, temperature, doc_ids=None):
  scores = queries.astype(np.float64) @ docs.astype(np.float64).T / temperature
  losses = []
  for i, row in enumerate(scores):
    keep = np.ones(len(row), bool) if doc_ids is None else (doc_ids != doc_ids[i])
    keep[i] = True
    top = row[keep].max()
    losses.append(top + np.log(np.sum(np.exp(row[keep] - top))) - row[i])
  return np.mean(losses)


def test_in_batch_softmax_loss_matches_numpy():
  rng = np.random.default_rng(4)
  queries = _normalise(rng.normal(size=(10, 8))).astype(np.float32)
  docs = _normalise(rng.normal(size=(10, 8))).astype(np.float32)
  loss = retrieval.in_batch_softmax_loss(queries, docs, 0.1)
  assert loss == pytest.approx(_numpy_in_batch_loss(queries, docs, 0.1), rel=1e-5)

  doc_ids = np.array([0, 1, 2, 1, 4, 0, 6, 1, 8, 9])
  masked = retrieval.in_batch_softmax_loss(queries, docs, 0.1, jnp.asarray(doc_ids))
  assert masked == pytest.approx(_numpy_in_batch_loss(queries, docs, 0.1, doc_ids), rel=1e-5)
  assert masked < loss  # Fewer negatives in the denominator.

  grads = jax.grad(retrieval.in_batch_softmax_loss, argnums=(0, 1))(
      queries, docs, 0.1, jnp.asarray(doc_ids))
  for grad in grads:
    assert np.all(np.isfinite(grad)) and np.any(grad != 0)


def test_embed_all_keeps_row_order(mesh):
  rng = np.random.default_rng(6)
  inputs = rng.normal(size=(45, 5)).astype(np.float32)
  params = {"w": rng.normal(size=(5, 3)).astype(np.float32)}
  embed_fn = lambda p, x: jnp.tanh(x @ p["w"])
  out = retrieval.embed_all(embed_fn, params, inputs, 16, mesh)
  assert out.shape == (45, 3)
  np.testing.assert_allclose(out, embed_fn(params, inputs), rtol=1e-6, atol=1e-6)
  tree = retrieval.embed_all(lambda p, b: b["x"] @ p["w"] + b["bias"][:, None], params,
                             {"x": inputs, "bias": np.arange(45, dtype=np.float32)}, 8, mesh)
  np.testing.assert_allclose(tree, inputs @ params["w"] + np.arange(45)[:, None], rtol=1e-5)


def _sparse_index(rng, num_docs, dense_dim, tail_dim, words=5):
  """A document index with a sparse tail, and the same documents as dense rows [N, D + T]."""
  dense = _normalise(rng.normal(size=(num_docs, dense_dim))).astype(np.float32)
  ids = rng.integers(0, tail_dim, size=(num_docs, words)).astype(np.int32)
  weights = rng.uniform(0, 1, size=(num_docs, words)).astype(np.float32)
  weights[:, -1] = 0.0                                   # padding words weigh nothing
  rows = np.zeros((num_docs, tail_dim), np.float32)
  np.add.at(rows, (np.arange(num_docs)[:, None], ids), weights)
  index = {"dense": dense, "tail_ids": ids, "tail_weights": weights}
  return index, np.concatenate([dense, rows], axis=1)


@pytest.mark.parametrize("chunk", [7, 2048])
def test_sparse_tail_scores_and_ranks_equal_the_dense_rows(mesh, chunk):
  """A tail scored chunk by chunk (7 does not divide 101) is the product with dense rows."""
  rng = np.random.default_rng(3)
  index, rows = _sparse_index(rng, 101, 8, 30)
  queries = rng.normal(size=(37, 38)).astype(np.float32)
  np.testing.assert_allclose(retrieval.index_scores(queries, index, chunk=chunk),
                             queries @ rows.T, rtol=1e-5, atol=1e-5)
  targets = rng.integers(0, 101, size=37)
  ranks = retrieval.evaluate_ranks(retrieval.make_ranker(mesh), queries, index, targets, 16, mesh)
  np.testing.assert_array_equal(ranks, _brute_force_ranks(queries, rows, targets))


def test_group_report_is_the_report_of_each_groups_rows():
  ranks = np.array([1, 3, 12, 2, 40, 1])
  groups = {"seen": np.array([1, 1, 0, 0, 0, 1], bool), "nobody": np.zeros(6, bool)}
  out = retrieval.group_report(ranks, groups)
  assert out["all"] == retrieval.retrieval_report(ranks)
  assert out["seen"] == retrieval.retrieval_report([1, 3, 1])
  assert out["seen"]["recall@1"] == pytest.approx(2 / 3) and "nobody" not in out


def test_hard_negatives_and_best_documents_use_the_sparse_tail():
  rng = np.random.default_rng(4)
  index, rows = _sparse_index(rng, 60, 4, 12)
  queries = rng.normal(size=(9, 16)).astype(np.float32)
  keys = np.arange(60) % 50                              # documents 50.. repeat 0..9
  positives = rng.integers(0, 50, size=9)
  negatives = retrieval.mine_hard_negatives(queries, index, keys[positives], keys, 3, chunk=4)
  scores = queries @ rows.T
  for q in range(9):
    allowed = np.flatnonzero(keys != keys[positives[q]])
    expected = allowed[np.argsort(-scores[q, allowed], kind="stable")[:3]]
    np.testing.assert_array_equal(np.sort(negatives[q]), np.sort(expected))
  np.testing.assert_array_equal(retrieval.best_documents(queries, index), scores.argmax(1))
