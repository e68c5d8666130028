"""teachers/retrieval_zero_shot.py: the query length the step gives the published encoder, and
the shapes a stored word-piece table restores into. (The encoder itself:
tests/teachers/test_text_encoder.py; the zero-shot teacher end to end:
tests/e2e/test_train_retrieval.py.)"""

import types

import numpy as np

from tgt_jax.teachers import retrieval_zero_shot as zero_shot


def test_query_length_is_the_longest_query_in_pieces_rounded_up_to_8():
  counts = np.array([0, 1, 1, 3, 1, 5], np.int32)        # word id → its word pieces
  task = types.SimpleNamespace(queries={
      "train": np.array([[3, 3, 4, 0], [2, 0, 0, 0]]),    # 3 + 3 + 1 = 7 pieces
      "test": np.array([[5, 0, 5, 0]])})                  # 5, then padding: the rest is not read
  assert zero_shot.query_length(task, counts, 512) == (16, 9)      # + [CLS], [SEP]
  assert zero_shot.query_length(task, counts, 12) == (12, 9)       # the encoder's limit


def test_a_stored_table_restores_into_its_meta_shapes():
  shapes = zero_shot.params_shapes({"query_vocab_size": 7, "max_pieces": 4})
  assert shapes["word_pieces"].shape == (7, 4) and shapes["word_piece_counts"].shape == (7,)
  assert {a.dtype for a in shapes.values()} == {np.dtype(np.int32)}
