"""data/reverse_dictionary.py: the labelled pairs are a seeded prefix (fewer pairs are a
subset of more), and the document vocabulary extends the query one, keeping its ids."""

import types

import numpy as np
import pytest

from tgt_jax.data import reverse_dictionary, wordnet


def test_fewer_labelled_pairs_are_a_subset_of_more_with_one_seed():
  few, many = (reverse_dictionary.labelled_rows(100, n, seed=4) for n in (10, 40))
  assert len(few) == 10 and len(np.unique(many)) == 40 and set(few) <= set(many)
  assert list(few) == sorted(few)
  assert not np.array_equal(few, reverse_dictionary.labelled_rows(100, 10, seed=5))


@pytest.mark.parametrize("num_pairs", [0, 101])
def test_a_number_of_pairs_outside_the_split_is_named(num_pairs):
  with pytest.raises(ValueError, match=f"data.num_pairs={num_pairs} must be between 1 and "
                                       "the train split's 100 queries"):
    reverse_dictionary.labelled_rows(100, num_pairs, seed=0)


def test_the_document_vocabulary_extends_the_query_vocabulary():
  base = wordnet.Vocabulary(wordnet.SPECIAL_TOKENS + ("dog", "cat"))
  texts = ["wolf , dog", "wolf , fox", "cat , wolf"]
  extended = reverse_dictionary.extended_vocabulary(base, texts, 8)
  # then by count (",", "wolf" 3 each, ties alphabetical; "dog" and "cat" are already there)
  assert extended.tokens == wordnet.SPECIAL_TOKENS + ("dog", "cat", ",", "wolf", "fox")
  assert reverse_dictionary.extended_vocabulary(base, texts, 6).tokens == extended.tokens[:6]
  with pytest.raises(ValueError, match="data.doc_vocab_size=4 must be at least the query "
                                       "vocabulary's 5 tokens"):
    reverse_dictionary.extended_vocabulary(base, texts, 4)


def test_a_document_is_its_lemmas():
  synset = types.SimpleNamespace(lemmas=("dog", "domestic_dog"))
  assert reverse_dictionary.document_text(synset) == "dog , domestic_dog"
