"""models/dual_encoder.py: unit-norm embeddings, ids = one-hot queries, the teacher is bigger."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tgt_jax.models import dual_encoder

QUERY_VOCAB, DOC_VOCAB = 50, 40


def _tokens(seed, vocab, batch=4, length=8):
  ids = jax.random.randint(jax.random.key(seed), (batch, length), 3, vocab)
  lengths = jnp.arange(batch) % (length - 2) + 2                  # 2.. tokens, then padding
  return jnp.where(jnp.arange(length) < lengths[:, None], ids, 0).astype(jnp.int32)


def _init(name, seed=0):
  model = dual_encoder.dual_encoder(name, QUERY_VOCAB, DOC_VOCAB)
  q, d = _tokens(seed, QUERY_VOCAB), _tokens(seed + 1, DOC_VOCAB, length=6)
  return model, model.init(jax.random.key(seed), q, d), q, d


@pytest.mark.parametrize("name", sorted(dual_encoder.DUAL_ENCODERS))
def test_embeddings_are_unit_vectors_of_the_declared_size(name):
  model, params, q, d = _init(name)
  query_emb, doc_emb = model.apply(params, q, d)
  assert query_emb.shape == (4, model.embed_dim) and doc_emb.shape == (4, model.embed_dim)
  np.testing.assert_allclose(jnp.linalg.norm(query_emb, axis=-1), 1.0, atol=1e-4)
  np.testing.assert_allclose(jnp.linalg.norm(doc_emb, axis=-1), 1.0, atol=1e-4)
  np.testing.assert_allclose(model.apply(params, d, method="embed_documents"), doc_emb, atol=1e-6)


@pytest.mark.parametrize("name", ["dual_small", "dual_large"])
def test_ids_and_one_hot_queries_give_the_same_embedding(name):
  """Soft query tokens are what TGT-gradient differentiates: one-hot must equal the ids."""
  model, params, q, _ = _init(name, seed=2)
  by_ids = model.apply(params, q, method="embed_queries")
  by_one_hot = model.apply(params, jax.nn.one_hot(q, QUERY_VOCAB), method="embed_queries")
  np.testing.assert_allclose(by_ids, by_one_hot, atol=1e-5)


@pytest.mark.parametrize("name", ["dual_small", "dual_large"])
def test_padding_is_invisible_to_both_towers(name):
  model, params, q, d = _init(name, seed=4)
  pad = lambda x: jnp.pad(x, ((0, 0), (0, 3)))
  np.testing.assert_allclose(model.apply(params, pad(q), method="embed_queries"),
                             model.apply(params, q, method="embed_queries"), atol=1e-5)
  np.testing.assert_allclose(model.apply(params, pad(d), method="embed_documents"),
                             model.apply(params, d, method="embed_documents"), atol=1e-5)


def test_teacher_tower_has_more_parameters_than_the_student():
  def size(name):
    model = dual_encoder.dual_encoder(name, QUERY_VOCAB, DOC_VOCAB)
    shapes = jax.eval_shape(model.init, jax.random.key(0), _tokens(0, QUERY_VOCAB),
                            _tokens(1, DOC_VOCAB))
    return sum(x.size for x in jax.tree.leaves(shapes))
  assert size("dual_large") > 2 * size("dual_small") > 2 * size("dual_tiny")


def test_unknown_name_lists_the_known_ones():
  with pytest.raises(ValueError, match=r"'dual_huge'.*dual_large.*dual_small.*dual_tiny"):
    dual_encoder.dual_encoder("dual_huge", QUERY_VOCAB, DOC_VOCAB)


@pytest.mark.parametrize("name", ["dual_small", "dual_large"])
def test_documents_read_the_query_table_only_through_query_words(name):
  """A document id below query_vocab is that query word: editing the query tower's vector of
  one word moves exactly the documents that contain it."""
  doc_vocab = QUERY_VOCAB + 20                   # document ids extend the query vocabulary
  model = dual_encoder.dual_encoder(name, QUERY_VOCAB, doc_vocab)
  docs = jnp.array([[7, 55, 0, 0], [54, 55, 56, 0], [3, 7, 7, 0]], jnp.int32)   # 7: shared
  params = model.init(jax.random.key(4), _tokens(4, QUERY_VOCAB), docs)
  table = params["params"]["query_trunk"]["embed"]["embedding"]
  edited = jax.tree.map(lambda x: x, params)
  edited["params"]["query_trunk"]["embed"]["embedding"] = table.at[7].add(jax.random.normal(jax.random.key(5), table.shape[1:]))
  moved = np.abs(np.asarray(model.apply(edited, docs, method="embed_documents")
                            - model.apply(params, docs, method="embed_documents"))).max(axis=-1)
  assert moved[0] > 1e-3 and moved[2] > 1e-3 and moved[1] == 0.0
  unshared = dual_encoder.DUAL_ENCODERS[name](query_vocab=QUERY_VOCAB, doc_vocab=doc_vocab,
                                              share_words=False)
  np.testing.assert_array_equal(                          # without sharing: no query table read
      unshared.apply(params, docs, method="embed_documents"),
      unshared.apply(edited, docs, method="embed_documents"))
