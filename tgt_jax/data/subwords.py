"""Hashed character n-grams of words: the sub-word features of fastText.

A word is wrapped in boundary marks ("<dog>") and cut into its character
n-grams for n in [n_min, n_max] ("<do", "dog", "og>", "<dog", ...). Each n-gram
is hashed into one of `buckets` rows by 32-bit FNV-1a of its UTF-8 bytes, so a
word never seen in training (a lemma that was never a positive) still shares
rows with the seen words it shares pieces with ("canine" and "canis"). The hash
depends on the string alone, never on Python's per-process salt, so every
process and every run gets the same ids.

Distinct n-grams can share a bucket. With n distinct n-grams in b buckets a
given n-gram shares its row with another one with probability
1 − (1 − 1/b)^(n−1) (`expected_collision_rate`); `collision_rate` measures it.
"""

import functools

import numpy as np

from tgt_jax.data import wordnet

FNV_OFFSET, FNV_PRIME = 2166136261, 16777619
NO_NGRAMS = frozenset(wordnet.SPECIAL_TOKENS) | {","}   # tokens without sub-word features


def fnv1a_32(data: bytes) -> int:
  """32-bit FNV-1a of `data`: a fixed, salt-free string hash."""
  h = FNV_OFFSET
  for byte in data:
    h = ((h ^ byte) * FNV_PRIME) & 0xFFFFFFFF
  return h


def char_ngrams(word, n_min=3, n_max=5):
  """The character n-grams of "<word>", shortest first, in order of position."""
  if not 1 <= n_min <= n_max:
    raise ValueError(f"n-gram sizes need 1 <= n_min <= n_max, got {n_min}, {n_max}.")
  marked = f"<{word}>"
  return [marked[i:i + n] for n in range(n_min, n_max + 1) for i in range(len(marked) - n + 1)]


def bucket(ngram, buckets):
  """The row of `ngram` in a table of `buckets` rows (plus row 0, which is padding): 1..buckets."""
  return 1 + fnv1a_32(ngram.encode("utf-8")) % buckets


def ngram_ids(tokens, buckets, n_min=3, n_max=5, max_ngrams=24):
  """int32 [len(tokens), max_ngrams]: each token's n-gram rows, 0-padded.

  A word with more than `max_ngrams` n-grams keeps its first ones (every
  n_min-gram first); specials and "," get none (`NO_NGRAMS`).
  """
  if buckets < 1 or max_ngrams < 1:
    raise ValueError(f"buckets and max_ngrams must be >= 1, got {buckets}, {max_ngrams}.")
  return _ngram_ids_cached(tuple(tokens), int(buckets), int(n_min), int(n_max), int(max_ngrams))


@functools.lru_cache(maxsize=8)
def _ngram_ids_cached(tokens, buckets, n_min, n_max, max_ngrams):
  table = np.zeros([len(tokens), max_ngrams], np.int32)
  for row, token in enumerate(tokens):
    if token in NO_NGRAMS:
      continue
    ids = [bucket(g, buckets) for g in char_ngrams(token, n_min, n_max)[:max_ngrams]]
    table[row, :len(ids)] = ids
  table.setflags(write=False)     # shared between callers
  return table


def truncated_fraction(tokens, n_min=3, n_max=5, max_ngrams=24):
  """The fraction of words (specials excluded) with more n-grams than `max_ngrams`."""
  words = [t for t in tokens if t not in NO_NGRAMS]
  return float(np.mean([len(char_ngrams(w, n_min, n_max)) > max_ngrams for w in words]))


def collision_rate(tokens, buckets, n_min=3, n_max=5, max_ngrams=24):
  """(distinct n-grams of `tokens`, the fraction of them whose bucket another one also holds)."""
  grams = {g for t in tokens if t not in NO_NGRAMS for g in char_ngrams(t, n_min, n_max)[:max_ngrams]}
  rows = np.array([bucket(g, buckets) for g in grams])
  _, inverse, counts = np.unique(rows, return_inverse=True, return_counts=True)
  return len(grams), float(np.mean(counts[inverse] > 1))


def expected_collision_rate(num_ngrams, buckets):
  """P(an n-gram's bucket holds another of `num_ngrams` uniformly hashed ones)."""
  return 1.0 - (1.0 - 1.0 / buckets) ** (num_ngrams - 1)
