"""WordPiece tokenisation from a Hugging Face tokenizer.json, as fixed-length int32 arrays.

A published sentence encoder (all-MiniLM-L6-v2 and other BERTs) ships its exact
tokeniser as tokenizer.json: normaliser (lower-casing, accent stripping), pre-tokeniser,
WordPiece vocabulary and the [CLS] … [SEP] template. HF `tokenizers` (Rust, no torch)
runs that file as published, so the ids are the ones the weights were trained on.

Two settings of the file are replaced: its truncation length and its padding. The
length a sentence-transformers model reads is its folder's `max_seq_length`
(all-MiniLM-L6-v2's tokenizer.json says 128, sentence-transformers truncates at 256),
and padding is to a length the caller fixes, so a jitted encoder compiles once per
length. A text longer than that length is an error, not a silent second truncation.
"""

import json

import numpy as np
import tokenizers
from etils import epath


class WordPieceTokenizer:
  """Texts → (ids, mask), int32 [N, length]; every text truncated to `max_length` tokens
  ([CLS] and [SEP] included), as the model's settings say."""

  def __init__(self, path, max_length):
    path = str(path)
    if not epath.Path(path).is_file():
      raise FileNotFoundError(f"Tokenizer file {path!r} does not exist.")
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
      raise ValueError(f"max_length={max_length!r} must be an integer ≥ 2 ([CLS] and [SEP]).")
    content = epath.Path(path).read_text()       # local or gs://, like the weights
    try:
      tokenizer = tokenizers.Tokenizer.from_str(content)
      padding = json.loads(content).get("padding") or {}
    except Exception as e:  # pylint: disable=broad-except  (the Rust reader raises its own types)
      raise ValueError(f"{path!r} is not a readable tokenizer.json: {e}") from None
    self.pad_id = int(padding.get("pad_id", tokenizer.token_to_id("[PAD]") or 0))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length)
    self.path, self.max_length, self._tokenizer = path, max_length, tokenizer

  @property
  def vocab_size(self):
    return self._tokenizer.get_vocab_size(with_added_tokens=True)

  def token_ids(self, texts):
    """One list of ids per text, specials included, truncated to max_length."""
    texts = list(texts)
    for i, text in enumerate(texts):
      if not isinstance(text, str):
        raise ValueError(f"Text {i} is {type(text).__name__} {text!r}, not a string.")
    return [encoding.ids for encoding in self._tokenizer.encode_batch(texts)]

  def pad(self, token_ids, length=None):
    """(ids, mask) int32 [N, length] of `token_ids` lists, padded with the file's pad id."""
    length = self.max_length if length is None else length
    if isinstance(length, bool) or not isinstance(length, int) or not 2 <= length <= self.max_length:
      raise ValueError(f"length={length!r} must be an integer in [2, {self.max_length}] "
                       "(the model's max_seq_length).")
    ids = np.full([len(token_ids), length], self.pad_id, np.int32)
    mask = np.zeros([len(token_ids), length], np.int32)
    for row, row_ids in enumerate(token_ids):
      if len(row_ids) > length:
        raise ValueError(f"Text {row} has {len(row_ids)} tokens, more than length={length}; "
                         f"pass a length up to {self.max_length} (or longest(...) of the texts).")
      ids[row, :len(row_ids)] = row_ids
      mask[row, :len(row_ids)] = 1
    return ids, mask

  def encode(self, texts, length=None):
    """(ids, mask) int32 [len(texts), length]; length defaults to max_length."""
    return self.pad(self.token_ids(texts), length)

  def longest(self, texts):
    """The most tokens any of `texts` has after truncation: the shortest length that fits."""
    return max((len(ids) for ids in self.token_ids(texts)), default=2)
