"""WordNet as a reverse dictionary: a noun gloss (query) → its synset's lemma set (document).

Every noun synset is a document ("dog , domestic dog , canis familiaris"), so the
index is fixed and known in advance. Queries are the classification task's
definitions (wordnet.load_dataset), tokenised with its train vocabulary, so the
text teacher's sequence VAE reads and writes them. The document vocabulary
*extends* that query vocabulary: a lemma word that is also a definition word
keeps the query's id (the dual encoders share its embedding), and the rest of
the lemma words follow by frequency. Most test documents are never a training
positive, so a lemma word must mean something before it is ever retrieved:
shared ids give it what the definitions taught the query tower.

Some synsets share a lemma set (several senses of "bank"); they get the same
`key`, are never each other's negatives, and tie in evaluation (ties count in
the target's favour, retrieval.target_ranks: the word retrieved is right).

Batches are pure functions of (seed, step), like data/sources.py, so a resumed
run replays exactly the data it would have seen.
"""

import dataclasses
import functools
import itertools
import os

import numpy as np

from tgt_jax import sharding
from tgt_jax.data import batches, wordnet

DOC_MAX_LEN = 12                  # tokens per lemma set: 97% fit ("," separates lemmas)
DOC_VOCAB_SIZE = 80_000           # ≥ the 6,000 query words + the 70,618 lemma tokens of nouns
_PAIRS_STREAM = 15_485_863        # seed offsets: the labelled pairs and kd_transfer's queries
_TRANSFER_STREAM = 7_919


@dataclasses.dataclass(frozen=True)
class Documents:
  tokens: np.ndarray              # int32 [N, doc_max_len], N = every noun synset
  keys: np.ndarray                # int32 [N]: equal iff the token rows are equal
  texts: tuple                    # the lemma sets as text, in synset order
  vocabulary: tuple               # document token strings by id (0 = padding)

  def __len__(self):
    return len(self.keys)


@dataclasses.dataclass(frozen=True)
class Pairs:
  """The labelled (query, document) pairs of a student, with the teacher's hard negatives."""
  queries: np.ndarray             # int32 [P, max_len]
  doc_ids: np.ndarray             # int64 [P]: the positive, a row of `Documents`
  negatives: np.ndarray           # int64 [P, K]: documents the teacher ranks highest but wrong

  def __len__(self):
    return len(self.doc_ids)


def document_text(synset):
  return " , ".join(synset.lemmas)


def extended_vocabulary(base, texts, size):
  """`base`'s tokens with their ids, then the most frequent other tokens of `texts`, to `size`."""
  if size < len(base):
    raise ValueError(f"data.doc_vocab_size={size} must be at least the query vocabulary's "
                     f"{len(base)} tokens, which it extends.")
  known = set(base.tokens)
  extra = wordnet.Vocabulary.build(texts, size + len(base))   # enough after the overlap
  added = [t for t in extra.tokens[len(wordnet.SPECIAL_TOKENS):] if t not in known]
  return wordnet.Vocabulary(tuple(base.tokens) + tuple(added[:size - len(base)]))


def load_documents(directory=None, doc_max_len=DOC_MAX_LEN, doc_vocab_size=DOC_VOCAB_SIZE,
                   query_tokens=None):
  """Every noun synset's lemma set as token ids (tokenised once per setting, then cached).

  With `query_tokens` (the query vocabulary's strings by id), the ids extend it
  (see the module docstring).
  """
  base = tuple(query_tokens) if query_tokens is not None else None
  return _load_documents_cached(os.path.realpath(directory or wordnet.DEFAULT_DIR),
                                int(doc_max_len), int(doc_vocab_size), base)


@functools.lru_cache(maxsize=4)
def _load_documents_cached(directory, doc_max_len, doc_vocab_size, base_tokens):
  texts = tuple(document_text(s) for s in wordnet.read_synsets(directory))
  if base_tokens is None:
    vocabulary = wordnet.Vocabulary.build(texts, doc_vocab_size)
  else:
    vocabulary = extended_vocabulary(wordnet.Vocabulary(base_tokens), texts, doc_vocab_size)
  tokens = vocabulary.encode_batch(texts, doc_max_len)
  _, keys = np.unique(tokens, axis=0, return_inverse=True)
  for array in (tokens, keys):
    array.setflags(write=False)   # shared between callers
  return Documents(tokens, keys.reshape(-1).astype(np.int32), texts, vocabulary.tokens)


@dataclasses.dataclass(frozen=True)
class Task:
  """Queries of every split with their positive documents, and the document index."""
  dataset: object                 # wordnet.load_dataset's: query vocabulary, shapes, splits
  documents: Documents

  @property
  def query_vocabulary(self):
    return self.dataset.vocabulary

  @property
  def queries(self):
    return {name: split.images for name, split in self.dataset.splits.items()}

  @property
  def doc_ids(self):
    """The positive of each query: its synset, i.e. its row of read_synsets."""
    return {name: split.indices for name, split in self.dataset.splits.items()}


def load_task(data_config):
  """The reverse dictionary of config.data (dir, max_len, vocab_size, doc_max_len, ...)."""
  directory = data_config.get("dir") or None
  dataset = wordnet.load_dataset(directory, data_config.get("max_len", wordnet.MAX_LEN),
                                 data_config.get("vocab_size", wordnet.VOCAB_SIZE))
  documents = load_documents(directory, data_config.get("doc_max_len", DOC_MAX_LEN),
                             data_config.get("doc_vocab_size", DOC_VOCAB_SIZE),
                             dataset.vocabulary)
  return Task(dataset, documents)


def query_word_idf(documents, query_vocab_size):
  """float32 [query_vocab_size]: log((N + 1) / (df + 1)) of each query word over the documents.

  df counts the documents whose lemma set holds the word. Specials, "," and
  words in no document get 0: they can never match, so they stay out of a
  TF-IDF vector's norm.
  """
  tokens = documents.tokens
  rows, cols = np.nonzero((tokens >= len(wordnet.SPECIAL_TOKENS)) & (tokens < query_vocab_size))
  pairs = np.unique(np.stack([rows, tokens[rows, cols]], axis=1), axis=0)
  df = np.bincount(pairs[:, 1], minlength=query_vocab_size)
  idf = np.log((len(tokens) + 1) / (df + 1)) * (df > 0)
  comma = [i for i, t in enumerate(documents.vocabulary[:query_vocab_size]) if t == ","]
  idf[comma] = 0.0
  return idf.astype(np.float32)


def labelled_rows(num_train, num_pairs, seed):
  """Rows of the train split whose pairs are labelled: a random `num_pairs` of them.

  The rows for n pairs are a prefix of one permutation per seed, so 2,500 pairs
  are a subset of 10,000 with the same seed.
  """
  if not 1 <= num_pairs <= num_train:
    raise ValueError(f"data.num_pairs={num_pairs} must be between 1 and the train split's "
                     f"{num_train} queries.")
  order = np.random.default_rng([seed, _PAIRS_STREAM]).permutation(num_train)
  return np.sort(order[:num_pairs])


def pair_stream(queries, doc_ids, documents, batch_size, seed, start_step=0):
  """This process's rows of each global batch of pairs, by (seed, step), from `start_step`.

  Each batch holds the query tokens, the positive document's tokens and its key
  (equal keys mark documents with identical lemma sets).
  """
  local = sharding.process_rows(batch_size)
  for step in itertools.count(start_step):
    rows = batches.batch_rows(len(doc_ids), batch_size, seed, step)[local]
    docs = doc_ids[rows]
    yield {"query": queries[rows], "positive": documents.tokens[docs],
           "positive_key": documents.keys[docs]}


def student_batch(pairs, documents, batch_size, seed, step, unlabelled=None, num_transfer=1):
  """This process's rows of the student's global batch `step`: queries, positives, negatives.

  With `unlabelled` (queries without labels), it adds num_transfer × batch_size
  of them as "transfer" (real queries with no document attached).
  """
  rows = batches.batch_rows(len(pairs), batch_size, seed, step)[sharding.process_rows(batch_size)]
  positives = pairs.doc_ids[rows]
  batch = {"query": pairs.queries[rows], "positive": documents.tokens[positives],
           "positive_key": documents.keys[positives], "positive_id": positives.astype(np.int32)}
  if pairs.negatives.shape[1]:
    negatives = pairs.negatives[rows]
    batch["negatives"] = documents.tokens[negatives]
    batch["negative_key"] = documents.keys[negatives]
  if unlabelled is not None:
    size = batch_size * num_transfer
    extra = batches.batch_rows(len(unlabelled), size, seed + _TRANSFER_STREAM, step)
    batch["transfer"] = unlabelled[extra[sharding.process_rows(size)]]
  return batch
