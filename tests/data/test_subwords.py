"""data/subwords.py: FNV-1a, the n-grams of a word, ids of seen and unseen words, collisions."""

import os
import subprocess
import sys

import numpy as np
import pytest

from tgt_jax.data import subwords, wordnet

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "wordnet")


def test_fnv1a_matches_the_published_test_vectors():
  # From the FNV reference (Fowler, Noll, Vo): 32-bit FNV-1a.
  assert subwords.fnv1a_32(b"") == 0x811C9DC5
  assert subwords.fnv1a_32(b"a") == 0xE40C292C
  assert subwords.fnv1a_32(b"foobar") == 0xBF9CF968


def test_char_ngrams_of_a_marked_word():
  assert subwords.char_ngrams("dog", 3, 4) == ["<do", "dog", "og>", "<dog", "dog>"]
  assert subwords.char_ngrams("a", 3, 5) == ["<a>"]
  with pytest.raises(ValueError, match="n_min <= n_max, got 4, 3"):
    subwords.char_ngrams("dog", 4, 3)


def test_a_words_ids_depend_on_the_word_alone_seen_or_unseen():
  """Training never defines an id: "canis" gets the same rows in a vocabulary where it is a
  trained word and in one where it never occurred, and an unseen word shares rows with the
  seen words it shares pieces with."""
  seen = ("<pad>", "<unk>", "<mask>", "dog", "canis", "wolf")
  other = ("<pad>", "<unk>", "<mask>", "canine", "cat", "canis", "lupus")
  a, b = subwords.ngram_ids(seen, 2 ** 16), subwords.ngram_ids(other, 2 ** 16)
  np.testing.assert_array_equal(a[seen.index("canis")], b[other.index("canis")])
  canine = set(b[other.index("canine")]) - {0}
  assert {subwords.bucket(g, 2 ** 16) for g in ("<ca", "can", "<can")} <= canine
  assert canine & set(a[seen.index("canis")]) and not canine & set(a[seen.index("wolf")]) - {0}
  np.testing.assert_array_equal(a[:3], 0)                    # specials have no n-grams
  assert a.dtype == np.int32 and a.min() >= 0 and a.max() <= 2 ** 16


def test_hashing_is_identical_in_another_process():
  """Python's str hash is salted per process; the n-gram ids must not be."""
  code = ("from tgt_jax.data import subwords; "
          "print(subwords.ngram_ids(('<pad>','<unk>','<mask>','canis','dog'), 1000).tolist())")
  outputs = {subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                            text=True, env={**os.environ, "PYTHONHASHSEED": seed}).stdout
             for seed in ("1", "2")}
  assert len(outputs) == 1
  here = subwords.ngram_ids(("<pad>", "<unk>", "<mask>", "canis", "dog"), 1000).tolist()
  assert outputs.pop().strip() == str(here)


def test_long_words_keep_their_first_ngrams_and_the_rate_is_reported():
  word = "internationalization"                           # 20 letters: 63 n-grams of 3..5
  ids = subwords.ngram_ids(("<pad>", "<unk>", "<mask>", word), 2 ** 20, max_ngrams=24)[3]
  first = [subwords.bucket(g, 2 ** 20) for g in subwords.char_ngrams(word)[:24]]
  np.testing.assert_array_equal(ids, first)
  vocabulary = ("<pad>", "<unk>", "<mask>", ",", "dog", word)
  assert subwords.truncated_fraction(vocabulary, max_ngrams=24) == 0.5


def test_collision_rate_on_wordnet_lemmas_is_the_documented_one():
  """On the fixture's lemma vocabulary the measured rate agrees with 1 − (1 − 1/b)^(n−1),
  the rate of uniform hashing, at two table sizes; with one bucket everything collides."""
  texts = [" , ".join(s.lemmas) for s in wordnet.read_synsets(FIXTURE)]
  vocabulary = wordnet.Vocabulary.build(texts, 100_000).tokens
  for buckets in (2 ** 10, 2 ** 14):
    distinct, rate = subwords.collision_rate(vocabulary, buckets)
    assert distinct > 1000
    assert rate == pytest.approx(subwords.expected_collision_rate(distinct, buckets), abs=0.03)
  assert subwords.collision_rate(vocabulary, 1)[1] == 1.0
  assert subwords.collision_rate(vocabulary, 2 ** 30)[1] < 0.01


def test_bad_sizes_are_named():
  with pytest.raises(ValueError, match="buckets and max_ngrams must be >= 1, got 0, 24"):
    subwords.ngram_ids(("<pad>",), 0)
