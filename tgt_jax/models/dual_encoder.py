"""Dual encoder for retrieval: a query tower and a document tower into one unit sphere.

The query tower is the text student's transformer trunk (models/text.py), so it
reads token ids [B, L] *or* soft token distributions [B, L, V]: TGT-gradient
differentiates the scores through the text VAE's relaxed decoder. Documents
(short lemma lists) go through a bag of embeddings, or a small transformer when
`doc_depth` > 0. Document ids extend the query vocabulary
(data/reverse_dictionary.py): with `share_words`, a document word that is also a
query word adds the query tower's vector for it to its own, so lemmas never
retrieved in training still arrive with what the definitions taught. Both towers end in a linear map and L2 normalisation, so a
score q·d is a cosine (retrieval.similarity divides it by a temperature).
"""

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from tgt_jax.models import text


def l2_normalize(x, eps=1e-12):
  """x / ‖x‖ (the floor only guards a zero vector: small inputs still get unit norm)."""
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(jnp.square(x), axis=-1, keepdims=True), eps))


class DualEncoder(nn.Module):
  """Query and document towers of a reverse dictionary (gloss → lemma set)."""
  query_vocab: int
  doc_vocab: int
  size: text.TransformerSize = text.TransformerSize()   # the query tower's trunk
  embed_dim: int = 64
  doc_depth: int = 0             # 0: order-blind bag of embeddings → MLP
  share_words: bool = True       # document ids < query_vocab also read the query table

  def setup(self):
    s = self.size
    self.query_trunk = text.Trunk(self.query_vocab, s)
    self.query_out = nn.Dense(self.embed_dim)
    if self.doc_depth:
      self.doc_trunk = text.Trunk(self.doc_vocab, dataclasses.replace(s, depth=self.doc_depth))
    else:
      self.doc_tokens = text.TokenEmbedding(self.doc_vocab, s.width, max_len=0)
      self.doc_hidden = nn.Dense(s.mlp_dim)
      self.doc_residual = nn.Dense(s.width)
    self.doc_out = nn.Dense(self.embed_dim)

  def embed_queries(self, q):
    """Token ids [B, L] or token distributions [B, L, V] → unit vectors [B, embed_dim]."""
    h, mask = self.query_trunk(q)
    return l2_normalize(self.query_out(text.masked_mean(h, mask)))

  def shared_word_vectors(self, d):
    """The query tower's vectors of document ids that are query words, else zeros [N, L, W]."""
    is_query_word = d < self.query_vocab
    vectors = text.embedding_lookup(self.query_trunk.embed.table,
                                    jnp.where(is_query_word, d, 0))
    return vectors * is_query_word[..., None].astype(vectors.dtype)

  def embed_documents(self, d):
    """Document token ids [N, L] → unit vectors [N, embed_dim]."""
    shared = self.shared_word_vectors(d) if self.share_words else None
    if self.doc_depth:
      h, mask = self.doc_trunk(d, shared)
      pooled = text.masked_mean(h, mask)
    else:
      tokens = self.doc_tokens(d)
      pooled = text.masked_mean(tokens if shared is None else tokens + shared,
                                text.input_mask(d))
      pooled = pooled + self.doc_residual(nn.gelu(self.doc_hidden(pooled)))
    return l2_normalize(self.doc_out(pooled))

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
    # For CPU tests and smoke runs only.
    "dual_tiny": functools.partial(DualEncoder, size=text.TransformerSize(16, 1, 2, 32),
                                   embed_dim=16),
}


def dual_encoder(name, query_vocab, doc_vocab):
  """The registered dual encoder `name` for the two vocabularies' sizes."""
  if name not in DUAL_ENCODERS:
    raise ValueError(f"Unknown dual encoder model name {name!r}; known: {sorted(DUAL_ENCODERS)}.")
  return DUAL_ENCODERS[name](query_vocab=int(query_vocab), doc_vocab=int(doc_vocab))
