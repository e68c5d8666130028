"""WordNet 3.0 noun synsets as a text classification task (no network).

Each noun synset's definition is classified into its lexicographer category,
one of 26 coarse "supersenses" (noun.animal, noun.artifact, ...). The parse
keeps the lemmas too, so a retrieval task (gloss → synset) can reuse it.

The data is the Debian package `wordnet-base` (/usr/share/wordnet/data.noun,
format in `man 5 wndb`). As with digits, the train / validation / test split
is stratified and fixed, independent of any run's seed; the vocabulary comes
from the train definitions only, so test words never leak into the inputs.
"""

import collections
import dataclasses
import functools
import numbers
import os
import re

import numpy as np

from tgt_jax.data.memory import Dataset, Split
from tgt_jax.data.splits import stratified_split_rows

DEFAULT_DIR = "/usr/share/wordnet"
MAX_LEN = 32
VOCAB_SIZE = 8000
SPLIT_SEED = 20220812              # fixed forever: changing it changes every number
TEST_FRACTION = 0.1
VALIDATION_FRACTION = 0.1

# Lexicographer files 03..28 of `man 5 lexnames`; class id = lex_filenum - 3.
NOUN_CATEGORIES = (
    "noun.Tops", "noun.act", "noun.animal", "noun.artifact", "noun.attribute",
    "noun.body", "noun.cognition", "noun.communication", "noun.event",
    "noun.feeling", "noun.food", "noun.group", "noun.location", "noun.motive",
    "noun.object", "noun.person", "noun.phenomenon", "noun.plant",
    "noun.possession", "noun.process", "noun.quantity", "noun.relation",
    "noun.shape", "noun.state", "noun.substance", "noun.time")
_FIRST_NOUN_FILE = 3

PAD, UNK, MASK = 0, 1, 2
SPECIAL_TOKENS = ("<pad>", "<unk>", "<mask>")

# A word is a run of letters/digits, possibly joined by single internal
# apostrophes or hyphens ("child's", "well-known", "moo-cow"): in glosses these
# are parts of one word, whereas a leading/trailing quote is punctuation.
# Every other non-space character (including "_") is a token of its own.
_TOKEN_RE = re.compile(r"[^\W_]+(?:['-][^\W_]+)*|[^\w\s]|_")
# Examples in a gloss are double-quoted sentences after "; ".
_EXAMPLE_START_RE = re.compile(r';\s*"')
_SYNTACTIC_MARKER_RE = re.compile(r"\([a-z]+\)$")   # e.g. "(a)"; data.adj only


@dataclasses.dataclass(frozen=True)
class Synset:
  offset: int                      # synset_offset field (its id within data.noun)
  category: int                    # lex_filenum - 3, an index into NOUN_CATEGORIES
  lemmas: tuple[str, ...]          # "_" shown as " ", case kept
  definition: str                  # the gloss without its examples
  gloss: str                       # the full text after "|"


def _data_path(directory):
  return os.path.join(os.path.realpath(directory or DEFAULT_DIR), "data.noun")


def _require(condition, message):
  if not condition:
    raise ValueError(message)


def _parse_line(line):
  """One data.noun synset line → Synset; ValueError saying what is wrong if malformed."""
  head, separator, gloss = line.partition("|")        # "|" cannot occur before the gloss
  _require(separator, "no '|' before the gloss")
  fields = head.split()
  _require(len(fields) >= 5, f"{len(fields)} fields before '|', expected at least 5")
  offset, lex_filenum, ss_type, word_count = fields[:4]
  _require(ss_type == "n", f"synset type {ss_type!r} is not a noun ('n')")
  category = int(lex_filenum) - _FIRST_NOUN_FILE
  _require(0 <= category < len(NOUN_CATEGORIES), f"lex_filenum {lex_filenum} is not a noun file")
  word_count = int(word_count, 16)
  pointer_count = int(fields[min(4 + 2 * word_count, len(fields) - 1)])
  expected = 4 + 2 * word_count + 1 + 4 * pointer_count
  _require(word_count > 0 and len(fields) == expected,
           f"{len(fields)} fields before '|', expected {expected}")
  lemmas = tuple(_SYNTACTIC_MARKER_RE.sub("", word).replace("_", " ")
                 for word in fields[4:4 + 2 * word_count:2])
  gloss = gloss.strip()
  definition = _EXAMPLE_START_RE.split(gloss, maxsplit=1)[0].rstrip("; \t")
  return Synset(int(offset), category, lemmas, definition, gloss)


@functools.lru_cache(maxsize=None)
def _read_synsets_cached(path):
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f"WordNet noun data not found at {path}. Install the Debian package "
        "(`apt-get install wordnet-base`) or set config.data.dir to a directory "
        "holding WordNet 3.0's data.noun.")
  synsets = []
  with open(path, encoding="utf-8") as f:
    for line_number, line in enumerate(f, start=1):
      if line.startswith("  ") or not line.strip():   # licence header
        continue
      try:
        synsets.append(_parse_line(line))
      except ValueError as e:
        raise ValueError(f"{path}, line {line_number}: malformed synset line "
                         f"({e}): {line[:80]!r}") from e
  return tuple(synsets)


def read_synsets(directory=None):
  """All noun synsets of `directory`/data.noun in file order (parsed once per path)."""
  return _read_synsets_cached(_data_path(directory))


def tokenize(text):
  """Lower-cased words (see _TOKEN_RE) and punctuation characters, in order."""
  return _TOKEN_RE.findall(text.lower())


@dataclasses.dataclass(frozen=True)
class Vocabulary:
  """Token strings by id; ids 0..2 are PAD, UNK and MASK."""
  tokens: tuple
  _ids: dict = dataclasses.field(init=False, repr=False, compare=False)

  def __post_init__(self):
    if tuple(self.tokens[:len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
      raise ValueError(f"A vocabulary starts with {SPECIAL_TOKENS}, got {self.tokens[:3]}.")
    ids = {token: i for i, token in enumerate(self.tokens)}
    if len(ids) != len(self.tokens):
      raise ValueError("A vocabulary's tokens must be distinct.")
    object.__setattr__(self, "tokens", tuple(self.tokens))
    object.__setattr__(self, "_ids", ids)

  @classmethod
  def build(cls, texts, size):
    """The `size` - 3 most frequent tokens of `texts` (ties alphabetical) after the specials."""
    if size < len(SPECIAL_TOKENS):
      raise ValueError(f"Vocabulary size {size} cannot hold the {len(SPECIAL_TOKENS)} specials.")
    counts = collections.Counter(token for text in texts for token in tokenize(text))
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    kept = [token for token, _ in ranked[:size - len(SPECIAL_TOKENS)]]
    return cls(SPECIAL_TOKENS + tuple(kept))

  def __len__(self):
    return len(self.tokens)

  def encode(self, text, max_len=MAX_LEN):
    """int32 [max_len]: token ids, truncated, then PAD; unknown tokens → UNK."""
    ids = np.full([max_len], PAD, np.int32)
    token_ids = [self._ids.get(token, UNK) for token in tokenize(text)[:max_len]]
    ids[:len(token_ids)] = token_ids
    return ids

  def encode_batch(self, texts, max_len=MAX_LEN):
    """int32 [len(texts), max_len], one `encode` row per text."""
    ids = np.full([len(texts), max_len], PAD, np.int32)
    for row, text in enumerate(texts):
      ids[row] = self.encode(text, max_len)
    return ids

  def decode(self, ids):
    """Tokens up to the first PAD, joined by single spaces (inverse of encode on known text)."""
    tokens = []
    for i in np.asarray(ids).reshape(-1).tolist():
      if i == PAD:
        break
      tokens.append(self.tokens[i])
    return " ".join(tokens)


def split_rows(categories):
  """Fixed stratified {'train', 'validation', 'test'} → sorted rows, disjoint and covering."""
  test, validation, train = stratified_split_rows(
      np.asarray(categories), [TEST_FRACTION, VALIDATION_FRACTION], SPLIT_SEED)
  return {"train": train, "validation": validation, "test": test}


def _check_integer(name, value, minimum):
  if (not isinstance(value, numbers.Integral) or isinstance(value, bool)
      or value < minimum):
    raise ValueError(f"{name} must be an integer ≥ {minimum}, got {value!r}.")


def load_dataset(directory=None, max_len=MAX_LEN, vocab_size=VOCAB_SIZE):
  """Definitions → token ids, labelled by category; vocabulary from train definitions."""
  _check_integer("max_len", max_len, 1)
  _check_integer("vocab_size", vocab_size, len(SPECIAL_TOKENS) + 1)
  return _load_dataset_cached(_data_path(directory), int(max_len), int(vocab_size))


def _read_only(array):
  array.setflags(write=False)       # the result is cached and shared between callers
  return array


@functools.lru_cache(maxsize=8)
def _load_dataset_cached(path, max_len, vocab_size):
  synsets = read_synsets(os.path.dirname(path))
  definitions = [s.definition for s in synsets]
  categories = np.array([s.category for s in synsets], np.int32)
  rows = split_rows(categories)
  vocab = Vocabulary.build([definitions[i] for i in rows["train"]], vocab_size)
  splits = {}
  for name, split_indices in rows.items():
    ids = vocab.encode_batch([definitions[i] for i in split_indices], max_len)
    splits[name] = Split(images=_read_only(ids),
                                labels=_read_only(categories[split_indices]),
                                indices=_read_only(split_indices.astype(np.int64)))
  return Dataset(splits, num_classes=len(NOUN_CATEGORIES), image_shape=(max_len,),
                      pixel_range=(0.0, 1.0), input_dtype="int32",
                      vocabulary=vocab.tokens, class_names=NOUN_CATEGORIES)
