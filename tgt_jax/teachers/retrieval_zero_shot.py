"""The zero-shot retrieval teacher: a published sentence encoder (`minilm`), nothing fitted.

What teachers/retrieval.py stores for a trained teacher, made here from the encoder
(teachers/text_encoder.py): the document index (every lemma set's embedding, from
its text, identical token sequences embedded once), each train query's hard
negatives (mined from the gloss's own text) and, as its "parameters", the table
that maps the text VAE's word ids to WordPiece ids (the encoder's own weights stay
in their published folder; their sha256 are in the teacher's identity).

Ranks for the report come in two forms per split: the gloss's text through the
tokenizer ("teacher"), and the query's VAE word ids through the table
("through_word_table", what the student's step feeds the encoder).
"""

import logging
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from tgt_jax import sharding
from tgt_jax.data import wordnet
from tgt_jax.engine import artifacts
from tgt_jax.evaluation import retrieval
from tgt_jax.teachers import text_encoder

MODELS = frozenset({"minilm"})
TABLE_BATCH = 256


def query_texts(task, data_dir, split):
  """The definitions of a split's queries (their synsets' glosses without the examples)."""
  synsets = wordnet.read_synsets(data_dir or None)
  return [synsets[int(i)].definition for i in task.doc_ids[split]]


def query_length(task, counts, max_seq_length):
  """Tokens the step gives a query: the longest real query through the table ([CLS], [SEP]
  included), rounded up to a multiple of 8, at most the encoder's max_seq_length."""
  longest = 2
  for queries in task.queries.values():
    present = np.cumprod(queries != wordnet.PAD, axis=1)
    longest = max(longest, int(np.max(np.sum(counts[queries] * present, axis=1))) + 2)
  return min(-(-longest // 8) * 8, max_seq_length), longest


def table_params(encoder, task, max_pieces):
  pieces, counts, cut = text_encoder.word_piece_table(encoder, task.query_vocabulary, max_pieces)
  return {"word_pieces": pieces, "word_piece_counts": counts}, cut


def params_shapes(meta):
  """Zeros shaped as a stored table (restoring checks shapes against them)."""
  vocab, pieces = meta["query_vocab_size"], meta["max_pieces"]
  return {"word_pieces": np.zeros([vocab, pieces], np.int32),
          "word_piece_counts": np.zeros([vocab], np.int32)}


def embed_through_table(scorer, params, word_ids):
  """float32 [N, D] of VAE word ids [N, L] through the table and the encoder (the step's path)."""
  fn = jax.jit(scorer.embed_queries)
  out = []
  for start in range(0, len(word_ids), TABLE_BATCH):
    rows = np.minimum(np.arange(start, start + TABLE_BATCH), len(word_ids) - 1)   # fixed shape
    out.append(np.asarray(fn(params, jnp.asarray(word_ids[rows]))))
  return np.concatenate(out)[:len(word_ids)]


def document_index(encoder, texts, log):
  """{"dense": [N, D]}: every lemma set, each distinct token sequence embedded once."""
  token_ids = encoder.tokenizer.token_ids(texts)
  _, first, inverse = np.unique(np.array([" ".join(map(str, ids)) for ids in token_ids]),
                                return_index=True, return_inverse=True)
  log(f"{len(first)} distinct document token sequences of {len(texts)}")
  unique = encoder.embed_token_ids([token_ids[i] for i in first], log)
  return {"dense": unique[inverse.reshape(-1)]}, len(first)


def make(config, task, mesh):
  """(meta, table params, document index, hard negatives, ranks {split: {scorer: [Q]}})."""
  rcfg = config.retrieval_teacher
  began, seconds = time.time(), {}
  log = lambda message: logging.info("Zero-shot retrieval teacher: %s (%.0f s).", message,
                                     time.time() - began)
  encoder = text_encoder.Encoder(text_encoder.encoder_dir(rcfg.encoder_dir))
  params, cut = table_params(encoder, task, int(rcfg.max_pieces))
  length, longest = query_length(task, params["word_piece_counts"],
                                 encoder.settings.max_seq_length)
  scorer = text_encoder.Scorer(encoder, length)
  device_params = {"encoder": encoder.variables, **jax.tree.map(jnp.asarray, params)}

  t = time.time()
  index, distinct = document_index(encoder, list(task.documents.texts), log)
  seconds["documents"] = time.time() - t
  ranks = {}
  for split in ("test", "validation"):
    t = time.time()
    targets = task.doc_ids[split]
    text_emb = encoder.embed_texts(query_texts(task, config.data.dir, split))
    table_emb = embed_through_table(scorer, device_params, task.queries[split])
    ranks[split] = {
        name: retrieval.ranks_of(emb, targets, index, config.eval_batch_size, mesh)
        for name, emb in (("teacher", text_emb), ("through_word_table", table_emb))}
    seconds[split] = time.time() - t
    log(f"{split} ranked")
  t = time.time()
  train_emb = encoder.embed_texts(query_texts(task, config.data.dir, "train"), log)
  keys = task.documents.keys
  negatives = retrieval.mine_hard_negatives(train_emb, index, keys[task.doc_ids["train"]], keys,
                                            rcfg.mined_negatives)
  seconds["mining"] = time.time() - t
  unknown = np.mean(task.queries["train"][task.queries["train"] != wordnet.PAD] == wordnet.UNK)
  meta = {"model": rcfg.model, "encoder_dir": encoder.directory,
          "encoder_max_seq_length": encoder.settings.max_seq_length,
          "embedding_dim": encoder.dimension, "max_pieces": int(rcfg.max_pieces),
          "query_length": length, "longest_real_query": longest, "words_cut": int(cut),
          "train_unknown_word_fraction": float(unknown), "distinct_documents": int(distinct),
          "seconds": {k: round(v, 1) for k, v in seconds.items()}}
  return meta, params, index, negatives, ranks


def restore_table(params_dir, meta, mesh, encoder_dir, meta_file):
  """The stored table, replicated; first the encoder folder's published files (their recorded
  sha256) and the teacher's own files (its checksums) are verified."""
  recorded = (meta.get("identity") or {}).get("retrieval_teacher.encoder_files")
  if recorded is not None:
    artifacts.verify_checksums(encoder_dir, recorded, "sentence encoder")

  def on_mismatch(name, expected, found):
    raise ValueError(f"The word-piece table in {os.fspath(params_dir)!r} does not match its "
                     f"{meta_file}: {name} expected shape {expected}, found {found}.")

  return artifacts.restore_replicated(params_dir, lambda: params_shapes(meta), mesh, on_mismatch,
                                      checksums=meta.get(artifacts.CHECKSUMS),
                                      what="retrieval teacher")


def scorer_and_params(meta, params, index, mesh):
  """(scorer, its parameters replicated on `mesh`) of a stored zero-shot teacher."""
  encoder = text_encoder.Encoder(meta["encoder_dir"])
  scorer = text_encoder.Scorer(encoder, meta["query_length"])
  tree = {"encoder": encoder.variables, "documents": index["dense"], **params}
  return scorer, sharding.replicate(mesh if mesh is not None else sharding.make_mesh(), tree)
