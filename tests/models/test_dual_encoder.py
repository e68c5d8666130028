"""models/dual_encoder.py: unit-norm embeddings, ids = one-hot queries, the teacher is bigger,
and the hybrid scorer's score against its formula."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tgt_jax.data import subwords
from tgt_jax.evaluation import retrieval
from tgt_jax.models import dual_encoder

from conftest import FAST_COMPILE

QUERY_VOCAB, DOC_VOCAB = 50, 40
LIGHT = sorted(set(dual_encoder.DUAL_ENCODERS) - {"dual_hybrid"})   # dual_hybrid: 2^20 n-grams
WORDS = ("<pad>", "<unk>", "<mask>", ",") + tuple(
    f"{stem}{end}" for stem in ("can", "dog", "lup", "fel", "mar", "ros", "tre", "bir", "fis", "hor",
                                "cat", "ape", "owl", "elk", "yak", "emu", "asp", "eel", "gnu",
                                "koi", "ram", "doe")
    for end in ("is", "ine", "us", "o"))


def tables(query_vocab=QUERY_VOCAB, doc_vocab=DOC_VOCAB, seed=0):
  """A hybrid model's n-gram table (of made-up words) and idf (0 for the specials and ",")."""
  idf = np.random.default_rng(seed).uniform(0.5, 3.0, query_vocab).astype(np.float32)
  idf[:4] = 0.0
  return {"subwords": subwords.ngram_ids(WORDS[:doc_vocab], 2 ** 12), "lexical_idf": idf}


def model_of(name, query_vocab=QUERY_VOCAB, doc_vocab=DOC_VOCAB):
  """A registered model; a hybrid one's document ids extend the query ids, as in the data."""
  extra = {}
  if name in dual_encoder.HYBRID:
    doc_vocab = max(doc_vocab, query_vocab + 10)
    extra = tables(query_vocab, doc_vocab)
  return dual_encoder.dual_encoder(name, query_vocab, doc_vocab, **extra)


def init(model, *args):
  """model.init as one compiled call (op by op, each initializer compiles on its own), with
  FAST_COMPILE: compiling is most of this file's time."""
  return jax.jit(model.init, compiler_options=FAST_COMPILE)(*args)


def apply(model, params, *args, method=None):
  """model.apply (or one of its methods) as one compiled call."""
  return jax.jit(functools.partial(model.apply, method=method),
                 compiler_options=FAST_COMPILE)(params, *args)


def _tokens(seed, vocab, batch=4, length=8):
  ids = jax.random.randint(jax.random.key(seed), (batch, length), 3, vocab)
  lengths = jnp.arange(batch) % (length - 2) + 2                  # 2.. tokens, then padding
  return jnp.where(jnp.arange(length) < lengths[:, None], ids, 0).astype(jnp.int32)


def _init(name, seed=0):
  model = model_of(name)
  q, d = _tokens(seed, QUERY_VOCAB), _tokens(seed + 1, DOC_VOCAB, length=6)
  return model, init(model, jax.random.key(seed), q, d), q, d


@pytest.mark.parametrize("name", LIGHT)
def test_embeddings_are_unit_vectors_of_the_declared_size(name):
  model, params, q, d = _init(name)
  query_emb, doc_emb = apply(model, params, q, d)
  assert query_emb.shape == (4, model.output_dim) and doc_emb.shape == (4, model.output_dim)
  dense = slice(0, model.embed_dim)
  np.testing.assert_allclose(jnp.linalg.norm(query_emb[:, dense], axis=-1), 1.0, atol=1e-4)
  np.testing.assert_allclose(jnp.linalg.norm(doc_emb[:, dense], axis=-1), 1.0, atol=1e-4)
  np.testing.assert_allclose(apply(model, params, d, method="embed_documents"), doc_emb,
                             atol=1e-6)


@pytest.mark.parametrize("name", ["dual_small", "dual_large", "dual_tiny_hybrid"])
def test_ids_and_one_hot_queries_give_the_same_embedding(name):
  """Soft query tokens are what TGT-gradient differentiates: one-hot must equal the ids."""
  model, params, q, _ = _init(name, seed=2)
  by_ids = apply(model, params, q, method="embed_queries")
  by_one_hot = apply(model, params, jax.nn.one_hot(q, QUERY_VOCAB), method="embed_queries")
  np.testing.assert_allclose(by_ids, by_one_hot, atol=1e-5)


@pytest.mark.parametrize("name", ["dual_small", "dual_large", "dual_tiny_hybrid"])
def test_padding_is_invisible_to_both_towers(name):
  model, params, q, d = _init(name, seed=4)
  pad = lambda x: jnp.pad(x, ((0, 0), (0, 3)))
  np.testing.assert_allclose(apply(model, params, pad(q), method="embed_queries"),
                             apply(model, params, q, method="embed_queries"), atol=1e-5)
  np.testing.assert_allclose(apply(model, params, pad(d), method="embed_documents"),
                             apply(model, params, d, method="embed_documents"), atol=1e-5)


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
  params = init(model, jax.random.key(4), _tokens(4, QUERY_VOCAB), docs)
  table = params["params"]["query_trunk"]["embed"]["embedding"]
  edited = jax.tree.map(lambda x: x, params)
  edited["params"]["query_trunk"]["embed"]["embedding"] = table.at[7].add(jax.random.normal(jax.random.key(5), table.shape[1:]))
  moved = np.abs(np.asarray(apply(model, edited, docs, method="embed_documents")
                            - apply(model, params, docs, method="embed_documents"))).max(axis=-1)
  assert moved[0] > 1e-3 and moved[2] > 1e-3 and moved[1] == 0.0
  unshared = dual_encoder.DUAL_ENCODERS[name](query_vocab=QUERY_VOCAB, doc_vocab=doc_vocab,
                                              share_words=False)
  np.testing.assert_array_equal(                          # without sharing: no query table read
      apply(unshared, params, docs, method="embed_documents"),
      apply(unshared, edited, docs, method="embed_documents"))


def _tfidf_cosine(q_ids, d_ids, idf):
  """Brute force: cosine of idf-weighted word-presence vectors over the query vocabulary."""
  def vector(ids):
    v = np.zeros(QUERY_VOCAB)
    for i in set(int(t) for t in ids if t < QUERY_VOCAB):
      v[i] = idf[i]
    n = np.linalg.norm(v)
    return v / n if n > 0 else v
  return float(vector(q_ids) @ vector(d_ids))


def test_hybrid_score_is_dense_plus_beta_times_tfidf():
  """score = q·d + β·cos_tfidf(q, d): checked against a brute-force TF-IDF, with repeats,
  padding, document words outside the query vocabulary and β ≠ 1."""
  doc_vocab = QUERY_VOCAB + 10
  model = model_of("dual_tiny_hybrid", doc_vocab=doc_vocab)
  idf = np.asarray(model.lexical_idf.value)
  q = jnp.array([[5, 9, 9, 12, 0, 0], [7, 3, 0, 0, 0, 0], [20, 21, 22, 5, 9, 1]], jnp.int32)
  d = jnp.array([[9, 55, 5, 0], [7, 7, 58, 0], [52, 53, 0, 0], [12, 20, 9, 5]], jnp.int32)
  params = init(model, jax.random.key(1), q, d)
  params["params"]["lexical_weight"] = jnp.asarray(1.7)
  query_emb, doc_emb = apply(model, params, q, d)
  dense_q = apply(model, params, q, method="dense_queries")
  dense_d = apply(model, params, d, method="dense_documents")
  expected = np.asarray(dense_q) @ np.asarray(dense_d).T + 1.7 * np.array(
      [[_tfidf_cosine(qi, di, idf) for di in np.asarray(d)] for qi in np.asarray(q)])
  np.testing.assert_allclose(np.asarray(query_emb) @ np.asarray(doc_emb).T, expected, atol=1e-5)
  assert expected[0, 2] == pytest.approx(float(dense_q[0] @ dense_d[2]), abs=1e-6)  # no overlap
  # The corpus form (sparse words) scores exactly what the dense rows score.
  index = apply(model, params, d, method="index_documents")
  np.testing.assert_allclose(retrieval.index_scores(query_emb, index, chunk=3), expected,
                             atol=1e-5)


def test_lexical_weight_is_learned_and_subwords_reach_unseen_words():
  model = model_of("dual_tiny_hybrid")
  q, d = _tokens(0, QUERY_VOCAB), _tokens(1, model.doc_vocab, length=6)
  params = init(model, jax.random.key(0), q, d)
  assert float(params["params"]["lexical_weight"]) == 1.0
  grad = jax.jit(jax.grad(lambda p: jnp.sum(model.apply(p, q, method="embed_queries")   # one
                                            @ model.apply(p, d, method="embed_documents").T)),
                 compiler_options=FAST_COMPILE)(params)   # program: options only at the top
  assert float(grad["params"]["lexical_weight"]) != 0.0
  # A document word the query tower never reads still moves with its n-grams' vectors.
  ngrams = params["params"]["subword"]["ngram_embedding"]
  word = model.doc_vocab - 1                             # a document-only word
  row = int(model.subwords.value[word, 0])
  edited = jax.tree.map(lambda x: x, params)
  edited["params"]["subword"]["ngram_embedding"] = ngrams.at[row].add(1.0)
  doc = jnp.array([[word, 0, 0, 0]], jnp.int32)
  assert np.abs(np.asarray(apply(model, edited, doc, method="dense_documents")
                           - apply(model, params, doc, method="dense_documents"))).max() > 1e-4


def test_hybrid_models_need_their_tables_and_check_their_sizes():
  with pytest.raises(ValueError, match="'dual_tiny_hybrid' needs an n-gram table"):
    dual_encoder.dual_encoder("dual_tiny_hybrid", QUERY_VOCAB, DOC_VOCAB)
  with pytest.raises(ValueError, match="'dual_tiny' takes no n-gram table"):
    dual_encoder.dual_encoder("dual_tiny", QUERY_VOCAB, DOC_VOCAB, **tables())
  with pytest.raises(ValueError, match="n-gram table has 60 rows.*idf 50.*have 61 \\(documents\\)"):
    dual_encoder.dual_encoder("dual_tiny_hybrid", QUERY_VOCAB, 61, **tables(doc_vocab=60))
  with pytest.raises(ValueError, match="extend the 50 query ids.*has 40"):
    dual_encoder.dual_encoder("dual_tiny_hybrid", QUERY_VOCAB, DOC_VOCAB, **tables())


def test_constant_tables_compare_by_content():
  a, b = (dual_encoder.Constant(np.arange(6).reshape(2, 3)) for _ in range(2))
  assert a == b and hash(a) == hash(b) and a != dual_encoder.Constant(np.arange(6))
  assert model_of("dual_tiny_hybrid") == model_of("dual_tiny_hybrid")
