"""teachers/text.py: the sequence VAE's likelihood by hand, and the samples file a person
reads. (Named test_teachers_text: tests/models/test_text.py tests the text models.)"""

import numpy as np
import pytest

from tgt_jax.teachers import text


def test_token_nll_sums_every_position_padding_included():
  logits = np.log(np.array([[[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]]], np.float32))
  tokens = np.array([[1, 0]])                     # p = 0.25 then 0.1 (the padding counts)
  assert float(text.token_nll(logits, tokens)[0]) == pytest.approx(-np.log(0.25 * 0.1),
                                                                   rel=1e-6)


def test_samples_stop_at_padding_and_name_the_labels():
  vocabulary = ("<pad>", "<unk>", "<mask>", "a", "small", "dog")
  rows = [{"real": [3, 4, 5, 0, 5], "decoded": [3, 5, 0, 0, 0], "label": 1,
           "explored": [([4, 5, 0], 0), ([5, 0, 0], 1)]},
          {"real": [5, 0], "decoded": [0, 0], "explored": []}]
  assert text.format_samples(vocabulary, ("animal", "pet"), rows) == (
      "#0  [pet]\n"
      "  real     | a small dog\n"
      "  decoded  | a dog\n"
      "  explored | small dog  → animal\n"
      "  explored | dog  → pet\n"
      "\n"
      "#1\n"
      "  real     | dog\n"
      "  decoded  | \n")
