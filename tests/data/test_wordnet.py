"""WordNet noun synsets: parsing, tokenisation, vocabulary, fixed splits, dataset."""

import os

import numpy as np
import pytest

from tgt_jax.data import datasets
from tgt_jax.data import wordnet

FIXTURE_DIR = os.path.join(os.path.dirname(__file__), "..", "fixtures", "wordnet")
REAL_FILE = os.path.join(wordnet.DEFAULT_DIR, "data.noun")
needs_real_wordnet = pytest.mark.skipif(
    not os.path.isfile(REAL_FILE), reason="apt-get install wordnet-base")


def _category_counts(synsets):
  return np.bincount([s.category for s in synsets], minlength=len(wordnet.NOUN_CATEGORIES))


def _check_splits(splits, categories):
  """Disjoint, covering, sorted, and each category split ≈ 80/10/10 (exact rounding)."""
  rows = [splits[name] for name in ("train", "validation", "test")]
  assert all(np.all(np.diff(r) > 0) for r in rows)
  everything = np.sort(np.concatenate(rows))
  np.testing.assert_array_equal(everything, np.arange(len(categories)))
  per_category = np.bincount(categories, minlength=len(wordnet.NOUN_CATEGORIES))
  for name, fraction in (("test", wordnet.TEST_FRACTION),
                         ("validation", wordnet.VALIDATION_FRACTION)):
    counts = np.bincount(categories[splits[name]], minlength=len(per_category))
    np.testing.assert_array_equal(counts, [int(round(fraction * n)) for n in per_category])
    assert np.all(counts[per_category >= 10] >= 1), name
  train_counts = np.bincount(categories[splits["train"]], minlength=len(per_category))
  assert np.all(train_counts[per_category >= 10] >= 1)


# ---- the real WordNet 3.0 (skipped without the Debian package) ----

@needs_real_wordnet
def test_real_file_has_every_noun_synset_in_26_categories():
  synsets = wordnet.read_synsets()
  assert len(synsets) == 82115
  counts = _category_counts(synsets)
  assert np.all(counts > 0) and len(counts) == 26
  # noun.motive is the smallest (42), noun.Tops next (51); noun.artifact the largest.
  assert counts.min() == 42 == counts[wordnet.NOUN_CATEGORIES.index("noun.motive")]
  assert counts.max() == 11587 == counts[wordnet.NOUN_CATEGORIES.index("noun.artifact")]
  assert wordnet.read_synsets(wordnet.DEFAULT_DIR) is synsets   # parsed once per path
  assert all(s.lemmas and s.definition for s in synsets)


@needs_real_wordnet
def test_real_splits_are_fixed_disjoint_and_stratified():
  categories = np.array([s.category for s in wordnet.read_synsets()])
  splits = wordnet.split_rows(categories)
  _check_splits(splits, categories)
  sizes = {name: len(rows) for name, rows in splits.items()}
  assert sum(sizes.values()) == 82115
  assert abs(sizes["test"] - 8211) <= 13 and abs(sizes["validation"] - 8211) <= 13
  again = wordnet.split_rows(categories)
  for name in splits:
    np.testing.assert_array_equal(again[name], splits[name])


@needs_real_wordnet
def test_real_dataset_shapes_and_vocabulary():
  dataset = datasets.load("wordnet")
  assert {name: len(split) for name, split in dataset.splits.items()} == {
      "train": 65693, "validation": 8211, "test": 8211}
  assert len(dataset.vocabulary) == wordnet.VOCAB_SIZE
  train = dataset.splits["train"]
  assert train.images.shape == (65693, wordnet.MAX_LEN) and train.images.dtype == np.int32
  for split in dataset.splits.values():                 # ~9% of (non-pad) tokens are rare words
    assert np.sum(split.images == wordnet.UNK) < 0.11 * np.sum(split.images != wordnet.PAD)


# ---- the committed excerpt (always runs) ----

def test_fixture_parses_with_lemmas_definitions_and_examples_apart():
  synsets = wordnet.read_synsets(FIXTURE_DIR)
  assert len(synsets) == 26 * 12
  np.testing.assert_array_equal(_category_counts(synsets), [12] * 26)
  by_offset = {s.offset: s for s in synsets}
  entity = by_offset[1740]
  assert entity.category == 0 and entity.lemmas == ("entity",)
  assert entity.definition == entity.gloss == (
      "that which is perceived or known or inferred to have its own distinct "
      "existence (living or nonliving)")
  assert by_offset[1930].lemmas == ("physical entity",)
  whole = by_offset[3553]
  assert whole.lemmas == ("whole", "unit")
  assert whole.definition == "an assemblage of parts that is regarded as a single entity"
  assert whole.gloss.startswith(whole.definition + '; "how big is that part')
  assert whole.gloss.endswith('"the team is a unit"')
  assert [s.offset for s in synsets] == sorted(by_offset)   # file order
  assert all(s.definition and not s.definition.endswith((";", " ")) and '"' not in s.definition
             for s in synsets if '; "' in s.gloss)


def test_missing_directory_says_how_to_get_wordnet(tmp_path):
  with pytest.raises(FileNotFoundError) as error:
    wordnet.read_synsets(str(tmp_path / "nowhere"))
  message = str(error.value)
  assert str(tmp_path / "nowhere" / "data.noun") in message
  assert "wordnet-base" in message and "config.data.dir" in message


def test_malformed_line_names_file_and_line(tmp_path):
  with open(os.path.join(FIXTURE_DIR, "data.noun"), encoding="utf-8") as f:
    lines = f.readlines()
  header = sum(line.startswith("  ") for line in lines)
  fields = lines[header + 2].split(" ")
  fields[3] = "05"                      # claims 5 words: the field count no longer adds up
  lines[header + 2] = " ".join(fields)
  (tmp_path / "data.noun").write_text("".join(lines), encoding="utf-8")
  with pytest.raises(ValueError, match=rf"data\.noun, line {header + 3}\b"):
    wordnet.read_synsets(str(tmp_path))


@pytest.mark.parametrize("broken", ["00001740 03 n 01 entity 0 000 no gloss bar\n",
                                    "00001740 03 v 01 entity 0 000 | a verb?\n",
                                    "00001740 42 n 01 entity 0 000 | not a noun file\n"])
def test_each_kind_of_malformed_line_raises(tmp_path, broken):
  (tmp_path / "data.noun").write_text("  1 licence\n" + broken, encoding="utf-8")
  with pytest.raises(ValueError, match="line 2"):
    wordnet.read_synsets(str(tmp_path))


# ---- tokenisation and vocabulary ----

def test_tokenize_keeps_word_internal_apostrophes_and_hyphens():
  assert wordnet.tokenize("A child's well-known `moo-cow' (e.g., 24/7)!") == [
      "a", "child's", "well-known", "`", "moo-cow", "'", "(", "e", ".", "g", ".", ",",
      "24", "/", "7", ")", "!"]
  assert wordnet.tokenize("  ") == []
  assert wordnet.tokenize("snake_case -- x") == ["snake", "_", "case", "-", "-", "x"]


@pytest.mark.parametrize("text", [
    "Hello, world!", "a (small) test; with: punctuation...", "it's 24/7 -- well-known",
    'he said "no"', "UPPER lower MiXeD"])
def test_round_trip_when_every_token_is_known(text):
  vocab = wordnet.Vocabulary.build([text], size=100)
  ids = vocab.encode(text, max_len=32)
  assert ids.dtype == np.int32 and ids.shape == (32,)
  assert vocab.decode(ids) == " ".join(wordnet.tokenize(text))


def test_round_trip_on_fixture_definitions():
  definitions = [s.definition for s in wordnet.read_synsets(FIXTURE_DIR)]
  vocab = wordnet.Vocabulary.build(definitions, size=100_000)
  max_len = max(len(wordnet.tokenize(d)) for d in definitions)
  ids = vocab.encode_batch(definitions, max_len)
  assert ids.shape == (len(definitions), max_len) and ids.dtype == np.int32
  assert not np.any(ids == wordnet.UNK)
  for row, definition in zip(ids, definitions):
    assert vocab.decode(row) == " ".join(wordnet.tokenize(definition))


def test_vocabulary_order_specials_and_size():
  vocab = wordnet.Vocabulary.build(["b a c", "b a", "b d"], size=6)
  assert vocab.tokens == ("<pad>", "<unk>", "<mask>", "b", "a", "c")   # frequency, then a-z
  assert len(vocab) == 6
  assert (vocab.tokens[wordnet.PAD], vocab.tokens[wordnet.UNK],
          vocab.tokens[wordnet.MASK]) == wordnet.SPECIAL_TOKENS
  assert len(wordnet.Vocabulary.build(["x"], size=50)) == 4
  with pytest.raises(ValueError):
    wordnet.Vocabulary(("a", "b", "c"))


def test_unknown_words_truncation_and_padding():
  vocab = wordnet.Vocabulary.build(["the cat sat"], size=10)
  the, cat = vocab.tokens.index("the"), vocab.tokens.index("cat")
  np.testing.assert_array_equal(vocab.encode("the dog", 4), [the, wordnet.UNK, 0, 0])
  np.testing.assert_array_equal(vocab.encode("the cat the cat the", 3), [the, cat, the])
  np.testing.assert_array_equal(vocab.encode("", 2), [0, 0])
  assert vocab.decode(vocab.encode("the dog", 4)) == "the <unk>"
  assert vocab.decode([the, 0, cat]) == "the"                          # stops at the first PAD
  np.testing.assert_array_equal(vocab.encode_batch(["cat", "dog sat"], 2),
                                [[cat, 0], [wordnet.UNK, vocab.tokens.index("sat")]])


# ---- the dataset ----

def test_load_dataset_on_fixture():
  dataset = datasets.load("wordnet", {"dir": FIXTURE_DIR, "max_len": 16, "vocab_size": 5000})
  assert dataset is wordnet.load_dataset(FIXTURE_DIR, 16, 5000)        # cached
  assert dataset.num_classes == 26 and dataset.image_shape == (16,)
  assert dataset.input_dtype == "int32" and dataset.class_names == wordnet.NOUN_CATEGORIES
  synsets = wordnet.read_synsets(FIXTURE_DIR)
  categories = np.array([s.category for s in synsets])
  _check_splits({name: split.indices for name, split in dataset.splits.items()}, categories)
  for split in dataset.splits.values():
    assert split.images.dtype == np.int32 and split.images.shape == (len(split), 16)
    assert split.labels.dtype == np.int32 and split.indices.dtype == np.int64
    np.testing.assert_array_equal(split.labels, categories[split.indices])
    assert split.images.min() >= 0 and split.images.max() < len(dataset.vocabulary)

  # The vocabulary is exactly the train definitions' tokens (5,000 is room enough)...
  def tokens_of(split_name):
    return {t for i in dataset.splits[split_name].indices
            for t in wordnet.tokenize(synsets[i].definition)}
  train_tokens = tokens_of("train")
  assert set(dataset.vocabulary[3:]) == train_tokens
  # ... so a word seen only in a test definition is UNK there.
  test = dataset.splits["test"]
  vocab = wordnet.Vocabulary(dataset.vocabulary)
  found = False
  for row, index in enumerate(test.indices):
    tokens = wordnet.tokenize(synsets[index].definition)[:16]
    for position, token in enumerate(tokens):
      if token not in train_tokens:
        assert test.images[row, position] == wordnet.UNK
        found = True
    np.testing.assert_array_equal(test.images[row], vocab.encode(synsets[index].definition, 16))
  assert found, "the fixture's test split should hold a word the train split lacks"


@pytest.mark.parametrize("kwargs", [{"max_len": 0}, {"max_len": 2.5}, {"vocab_size": 3},
                                    {"vocab_size": -1}])
def test_load_dataset_rejects_bad_sizes(kwargs):
  name, value = next(iter(kwargs.items()))
  with pytest.raises(ValueError, match=rf"{name}.*{value}"):
    wordnet.load_dataset(FIXTURE_DIR, **kwargs)
