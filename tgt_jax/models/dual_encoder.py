"""Dual encoder for retrieval: a query tower and a document tower into one unit sphere.

The query tower is the text student's transformer trunk (models/text.py), so it
reads token ids [B, L] *or* soft token distributions [B, L, V]: TGT-gradient
differentiates the scores through the text VAE's relaxed decoder. Documents
(short lemma lists) go through a bag of embeddings, or a small transformer when
`doc_depth` > 0. Document ids extend the query vocabulary
(data/reverse_dictionary.py): with `share_words`, a document word that is also a
query word adds the query tower's vector for it to its own, so lemmas never
retrieved in training still arrive with what the definitions taught. Both towers end in a
linear map and L2 normalisation, so a score q·d is a cosine (retrieval.similarity
divides it by a temperature).

Two optional parts make the teacher scorer (`dual_hybrid`) generalise to
documents it never saw as positives:
  subwords  every word also reads the mean of its hashed character n-grams'
            vectors (data/subwords.py), one table shared by both towers, so an
            unseen lemma arrives with pieces of the words it resembles;
  lexical   a TF-IDF term over the query words: the score is
            (q·d + β·lex(q)·lex(d)) / τ with a learned β, where lex() is the
            L2-normalised idf-weighted presence of each query-vocabulary word.
With `lexical`, an embedding is the unit dense vector followed by the lexical
vector ([dense, β·lex] for queries, [dense, lex] for documents), so every score
is still one dot product; `index_documents` keeps the document side sparse (its
≤ L words and weights) for scoring against the whole corpus.
"""

import dataclasses
import functools
import hashlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from tgt_jax.models import text


def l2_normalize(x, eps=1e-12):
  """x / ‖x‖ (the floor only guards a zero vector: small inputs still get unit norm)."""
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(jnp.square(x), axis=-1, keepdims=True), eps))


def lexical_queries(q, idf, query_vocab):
  """[B, query_vocab]: unit-norm idf-weighted presence of each query word.

  Presence is min(count, 1); for soft tokens [B, L, V] the count is the summed
  probability, so a one-hot input gives exactly what its ids give.
  """
  if jnp.issubdtype(q.dtype, jnp.integer):
    q = jax.nn.one_hot(q, query_vocab)
  return l2_normalize(jnp.minimum(jnp.sum(q, axis=1), 1.0) * idf)


def lexical_documents(d, idf, query_vocab):
  """(ids [N, L], weights [N, L]): each document's query words, once each, idf-weighted, unit norm.

  A document word outside the query vocabulary (or a repeat) gets weight 0.
  """
  matchable = d < query_vocab
  ids = jnp.where(matchable, d, 0)
  earlier = jnp.tril(jnp.ones((d.shape[1], d.shape[1]), bool), -1)
  repeat = jnp.any((ids[:, :, None] == ids[:, None, :]) & earlier, axis=-1)
  return ids, l2_normalize(text.embedding_lookup(idf, ids) * (matchable & ~repeat))


@dataclasses.dataclass(frozen=True, eq=False)
class Constant:
  """A numpy array a module closes over (an n-gram table, idf weights).

  Hashed and compared by content, so equal tables give equal modules and the
  jitted towers are compiled once.
  """
  value: np.ndarray

  def __post_init__(self):
    value = np.ascontiguousarray(self.value)
    digest = hashlib.sha1(value.tobytes() + str((value.shape, value.dtype)).encode()).hexdigest()
    object.__setattr__(self, "value", value)
    object.__setattr__(self, "fingerprint", digest)

  def __hash__(self):
    return hash(self.fingerprint)

  def __eq__(self, other):
    return isinstance(other, Constant) and other.fingerprint == self.fingerprint


class SubwordEmbedding(nn.Module):
  """Each token id → the projected mean of its character n-grams' vectors ([..., width])."""
  ngrams: Constant               # int32 [V, M]: each token's n-gram rows, 0 = none
  buckets: int
  width: int
  features: int = 32

  def setup(self):
    self.table = self.param("ngram_embedding", nn.initializers.normal(0.02),
                            (self.buckets + 1, self.features))
    self.project = nn.Dense(self.width, use_bias=False)

  def __call__(self, ids):
    rows = text.embedding_lookup(jnp.asarray(self.ngrams.value), ids)          # [..., M]
    present = (rows > 0).astype(jnp.float32)[..., None]
    vectors = text.embedding_lookup(self.table, rows) * present
    mean = jnp.sum(vectors, axis=-2) / jnp.maximum(jnp.sum(present, axis=-2), 1.0)
    return self.project(mean)

  def of_vocabulary(self, size):
    """[size, width]: the vectors of ids 0..size-1 (what soft tokens average over)."""
    return self(jnp.arange(size))


class DualEncoder(nn.Module):
  """Query and document towers of a reverse dictionary (gloss → lemma set)."""
  query_vocab: int
  doc_vocab: int
  size: text.TransformerSize = text.TransformerSize()   # the query tower's trunk
  embed_dim: int = 64
  doc_depth: int = 0             # 0: order-blind bag of embeddings → MLP
  share_words: bool = True       # document ids < query_vocab also read the query table
  subwords: Constant = None      # int32 [doc_vocab, M] n-gram rows (data/subwords.py), or None
  subword_buckets: int = 0
  lexical_idf: Constant = None   # float32 [query_vocab] idf, 0 for words never matched, or None

  def setup(self):
    s = self.size
    self.query_trunk = text.Trunk(self.query_vocab, s)
    if self.subwords is not None:
      self.subword = SubwordEmbedding(self.subwords, self.subword_buckets, s.width)
    if self.lexical_idf is not None:
      self.lexical_weight = self.param("lexical_weight", nn.initializers.ones, ())
    self.query_out = nn.Dense(self.embed_dim)
    if self.doc_depth:
      self.doc_trunk = text.Trunk(self.doc_vocab, dataclasses.replace(s, depth=self.doc_depth))
    else:
      self.doc_tokens = text.TokenEmbedding(self.doc_vocab, s.width, max_len=0)
      self.doc_hidden = nn.Dense(s.mlp_dim)
      self.doc_residual = nn.Dense(s.width)
    self.doc_out = nn.Dense(self.embed_dim)

  @property
  def output_dim(self):
    """Entries of an embedding: the dense part, then the lexical part if any."""
    return self.embed_dim + (self.query_vocab if self.lexical_idf is not None else 0)

  def query_subwords(self, q):
    if jnp.issubdtype(q.dtype, jnp.integer):
      return self.subword(q)
    return q @ self.subword.of_vocabulary(self.query_vocab)

  def dense_queries(self, q):
    """Token ids [B, L] or token distributions [B, L, V] → unit vectors [B, embed_dim]."""
    h, mask = self.query_trunk(q, self.query_subwords(q) if self.subwords is not None else None)
    return l2_normalize(self.query_out(text.masked_mean(h, mask)))

  def lexical_queries(self, q):
    return lexical_queries(q, jnp.asarray(self.lexical_idf.value), self.query_vocab)

  def lexical_documents(self, d):
    return lexical_documents(d, jnp.asarray(self.lexical_idf.value), self.query_vocab)

  def embed_queries(self, q):
    """[B, output_dim]: the dense unit vector, then β·lex(q) when the score is hybrid."""
    dense = self.dense_queries(q)
    if self.lexical_idf is None:
      return dense
    return jnp.concatenate([dense, self.lexical_weight * self.lexical_queries(q)], axis=-1)

  def shared_word_vectors(self, d):
    """The query tower's vectors of document ids that are query words, else zeros [N, L, W]."""
    is_query_word = d < self.query_vocab
    vectors = text.embedding_lookup(self.query_trunk.embed.table,
                                    jnp.where(is_query_word, d, 0))
    return vectors * is_query_word[..., None].astype(vectors.dtype)

  def dense_documents(self, d):
    """Document token ids [N, L] → unit vectors [N, embed_dim]."""
    shared = self.shared_word_vectors(d) if self.share_words else None
    if self.subwords is not None:
      shared = self.subword(d) if shared is None else shared + self.subword(d)
    if self.doc_depth:
      h, mask = self.doc_trunk(d, shared)
      pooled = text.masked_mean(h, mask)
    else:
      tokens = self.doc_tokens(d)
      pooled = text.masked_mean(tokens if shared is None else tokens + shared,
                                text.input_mask(d))
      pooled = pooled + self.doc_residual(nn.gelu(self.doc_hidden(pooled)))
    return l2_normalize(self.doc_out(pooled))

  def embed_documents(self, d):
    """[N, output_dim]: the dense unit vector, then lex(d) as a dense row (small N only)."""
    dense = self.dense_documents(d)
    if self.lexical_idf is None:
      return dense
    ids, weights = self.lexical_documents(d)
    lexical = jnp.sum(jax.nn.one_hot(ids, self.query_vocab) * weights[..., None], axis=1)
    return jnp.concatenate([dense, lexical], axis=-1)

  def index_documents(self, d):
    """The corpus-scale form of embed_documents: {"dense"} (+ "tail_ids", "tail_weights")."""
    out = {"dense": self.dense_documents(d)}
    if self.lexical_idf is not None:
      out["tail_ids"], out["tail_weights"] = self.lexical_documents(d)
    return out

  def __call__(self, q, d):
    """Both towers (what `init` needs): (query embeddings, document embeddings)."""
    return self.embed_queries(q), self.embed_documents(d)


DUAL_ENCODERS = {
    # The student: the text student's trunk (width 64, depth 2) and a bag-of-embeddings
    # document tower.
    "dual_small": functools.partial(DualEncoder, size=text.TransformerSize(64, 2, 4, 128),
                                    embed_dim=64),
    # The teacher scorer: wider, one more query layer, a transformer over the lemma list.
    "dual_large": functools.partial(DualEncoder, size=text.TransformerSize(128, 3, 4, 256),
                                    embed_dim=128, doc_depth=1),
    # The teacher scorer: dual_large's towers with sub-word features and a learned
    # TF-IDF term (dual_encoder(..., subwords=, lexical_idf=) supplies the tables).
    "dual_hybrid": functools.partial(DualEncoder, size=text.TransformerSize(128, 3, 4, 256),
                                     embed_dim=128, doc_depth=1, subword_buckets=2 ** 20),
    # For CPU tests and smoke runs only.
    "dual_tiny": functools.partial(DualEncoder, size=text.TransformerSize(16, 1, 2, 32),
                                   embed_dim=16),
    "dual_tiny_hybrid": functools.partial(DualEncoder, size=text.TransformerSize(16, 1, 2, 32),
                                          embed_dim=16, subword_buckets=2 ** 12),
}
HYBRID = frozenset({"dual_hybrid", "dual_tiny_hybrid"})   # need subwords= and lexical_idf=


def subword_buckets(name):
  """The n-gram buckets of registered model `name` (0: it has no sub-word features)."""
  return DUAL_ENCODERS[name].keywords.get("subword_buckets", 0)


def dual_encoder(name, query_vocab, doc_vocab, subwords=None, lexical_idf=None):
  """The registered dual encoder `name` for the two vocabularies' sizes.

  A hybrid model needs its n-gram table ([doc_vocab, M] int) and idf ([query_vocab]).
  """
  if name not in DUAL_ENCODERS:
    raise ValueError(f"Unknown dual encoder model name {name!r}; known: {sorted(DUAL_ENCODERS)}.")
  if (name in HYBRID) != (subwords is not None and lexical_idf is not None):
    raise ValueError(f"Dual encoder {name!r} " + (
        "needs an n-gram table and idf weights." if name in HYBRID else
        "takes no n-gram table or idf weights: only the hybrid ones "
        f"{sorted(HYBRID)} do."))
  extra = {}
  if name in HYBRID:
    if doc_vocab < query_vocab:
      raise ValueError(f"Dual encoder {name!r}: document ids extend the {query_vocab} query ids "
                       f"(they share the n-gram table), but the document vocabulary has "
                       f"{doc_vocab}.")
    subwords, lexical_idf = np.asarray(subwords, np.int32), np.asarray(lexical_idf, np.float32)
    if subwords.shape[0] != doc_vocab or lexical_idf.shape != (query_vocab,):
      raise ValueError(f"Dual encoder {name!r}: the n-gram table has {subwords.shape[0]} rows and "
                       f"the idf {lexical_idf.shape[0]}; the vocabularies have {doc_vocab} "
                       f"(documents) and {query_vocab} (queries).")
    extra = {"subwords": Constant(subwords), "lexical_idf": Constant(lexical_idf)}
  return DUAL_ENCODERS[name](query_vocab=int(query_vocab), doc_vocab=int(doc_vocab), **extra)
