"""The retrieval teacher: a large dual encoder trained on every labelled train pair.

It plays T (the labeler) of TGT for retrieval: its scores against a step's
candidate documents are the soft labels the student distils. Trained once, it
also mines each train query's hard negatives (its best-scoring wrong documents)
and embeds every document, and stores both next to its parameters, so the
student runs (methods × seeds × label budgets) never repeat that work.

On disk: params/ (orbax), doc_embeddings.npy, train_hard_negatives.npy and,
written last so that it marks the directory complete, retrieval_teacher.json
(model, vocabulary fingerprints, report).
"""

import json
import logging
import os

import jax
import numpy as np
from etils import epath

from tgt_jax import checkpointing, sharding
from tgt_jax.engine import artifacts
from tgt_jax.teachers import generative
from tgt_jax.data import reverse_dictionary
from tgt_jax.evaluation import retrieval
from tgt_jax.models import dual_encoder
from tgt_jax.teachers import training

META_FILE = "retrieval_teacher.json"
DOC_EMBEDDINGS = "doc_embeddings.npy"
HARD_NEGATIVES = "train_hard_negatives.npy"


def directory_of(config, workdir):
  return config.retrieval_teacher.dir or str(epath.Path(workdir) / "retrieval_teacher")


def fingerprints(task):
  """What a stored teacher must agree on with the data: both vocabularies and lengths."""
  return {"query_vocab_size": len(task.query_vocabulary),
          "query_vocabulary_fingerprint": generative.vocabulary_fingerprint(task.query_vocabulary),
          "max_len": int(task.queries["train"].shape[1]),
          "doc_vocab_size": len(task.documents.vocabulary),
          "doc_vocabulary_fingerprint": generative.vocabulary_fingerprint(
              task.documents.vocabulary),
          "doc_max_len": int(task.documents.tokens.shape[1]),
          "num_documents": len(task.documents)}


def build(meta):
  return dual_encoder.dual_encoder(meta["model"], meta["query_vocab_size"], meta["doc_vocab_size"])


def init_params(model, task, rng):
  """Parameters of both towers (one compiled call, not one per initializer)."""
  return jax.jit(model.init)(rng, task.queries["train"][:1], task.documents.tokens[:1])


def in_batch_loss(model, temperature):
  """The fit loss: in-batch softmax over a batch of (query, positive document) pairs."""

  def loss(params, batch, rng, step):
    del rng, step
    query_emb, doc_emb = model.apply(params, batch["query"], batch["positive"])
    # The [B, B] scores are tiny: every device computes them whole.
    value = retrieval.in_batch_softmax_loss(
        sharding.gathered(query_emb), sharding.gathered(doc_emb), temperature,
        sharding.gathered(batch["positive_key"]))
    return value, {}

  return loss


def train(config, task, mesh, run_dir=None):
  """(meta, params, doc_embeddings, hard_negatives): fit on all train pairs, mine, report.

  With `run_dir`, the fit checkpoints there and a restarted job resumes from it.
  """
  rcfg = config.retrieval_teacher
  meta = {"model": rcfg.model, **fingerprints(task),
          "score_temperature": float(config.retrieval.score_temperature),
          "steps": int(rcfg.steps), "batch_size": int(rcfg.batch_size), "seed": int(rcfg.seed)}
  model = build(meta)
  stream = lambda start: reverse_dictionary.pair_stream(
      task.queries["train"], task.doc_ids["train"], task.documents, rcfg.batch_size, rcfg.seed,
      start)
  params = training.fit(
      in_batch_loss(model, config.retrieval.score_temperature),
      init_params(model, task, jax.random.key(rcfg.seed)), stream, steps=rcfg.steps,
      batch_size=rcfg.batch_size, learning_rate=rcfg.learning_rate, seed=rcfg.seed, mesh=mesh,
      name="retrieval teacher", log_every=rcfg.log_every, run_dir=run_dir)
  doc_emb = retrieval.embed(model, params, task.documents.tokens, "documents",
                                config.eval_batch_size, mesh)
  meta["report"] = {name: retrieval.rank_report(model, params, task.queries[name],
                                                    task.doc_ids[name], doc_emb,
                                                    config.eval_batch_size, mesh)
                    for name in ("test", "validation")}
  train_emb = retrieval.embed(model, params, task.queries["train"], "queries",
                                  config.eval_batch_size, mesh)
  keys = task.documents.keys
  negatives = retrieval.mine_hard_negatives(train_emb, doc_emb, keys[task.doc_ids["train"]],
                                                keys, rcfg.mined_negatives)
  meta["mined_negatives"] = int(rcfg.mined_negatives)
  return meta, params, doc_emb, negatives


def save(directory, meta, params, doc_emb, negatives):
  """Arrays first, then params and the JSON (complete once the JSON exists)."""
  path = checkpointing.absolute(directory)
  if jax.process_index() == 0:
    path.mkdir(parents=True, exist_ok=True)
    for name, array in ((DOC_EMBEDDINGS, doc_emb), (HARD_NEGATIVES, negatives)):
      with (path / name).open("wb") as f:
        np.save(f, array)
  artifacts.save_params_then_json(path, params, META_FILE, meta)


def exists(directory):
  return epath.Path(directory, META_FILE).exists()


def read_meta(directory):
  path = epath.Path(directory, META_FILE)
  if not path.exists():
    raise FileNotFoundError(
        f"No retrieval teacher at {os.fspath(directory)!r}: {META_FILE} is missing. Train one "
        "with --config=configs/wordnet_retrieval.py:job=retrieval_teacher (same data options), "
        "or set config.retrieval_teacher.dir to its directory, or "
        "config.retrieval_teacher.train_if_missing=True.")
  return json.loads(path.read_text())


def load(directory, task, mesh, min_negatives=0):
  """(meta, model, params, doc_embeddings, train hard negatives), checked against the data."""
  meta = read_meta(directory)
  for key, expected in fingerprints(task).items():
    if meta.get(key) != expected:
      raise ValueError(f"The retrieval teacher at {os.fspath(directory)!r} does not fit: the "
                       f"data/config expects {key} {expected}, the teacher has {meta.get(key)}.")
  if meta["mined_negatives"] < min_negatives:
    raise ValueError(f"retrieval.hard_negatives={min_negatives} exceeds the "
                     f"{meta['mined_negatives']} hard negatives mined by the teacher at "
                     f"{os.fspath(directory)!r} (its retrieval_teacher.mined_negatives).")
  model = build(meta)
  path = checkpointing.absolute(directory)

  def on_mismatch(name, expected, found):
    raise ValueError(f"Retrieval teacher parameters in {os.fspath(directory)!r} do not match "
                     f"model {meta['model']!r}: parameter {name} expected shape {expected}, "
                     f"found {found}.")

  params = artifacts.restore_replicated(
      path / generative.PARAMS_DIR, lambda: init_params(model, task, jax.random.key(0)), mesh,
      on_mismatch)
  with (path / DOC_EMBEDDINGS).open("rb") as f:
    doc_emb = np.load(f)
  with (path / HARD_NEGATIVES).open("rb") as f:
    negatives = np.load(f)
  return meta, model, params, doc_emb, negatives


def load_or_train(config, workdir, task, mesh, min_negatives=0):
  """The configured retrieval teacher; trained and saved first if missing and allowed."""
  directory = directory_of(config, workdir)
  if not exists(directory):
    if not config.retrieval_teacher.train_if_missing:
      read_meta(directory)          # raises the clear "no retrieval teacher here" error
    logging.info("No retrieval teacher in %s: training one (config.retrieval_teacher).",
                 directory)
    save(directory, *train(config, task, mesh, training.run_dir_of(directory)))
  return load(directory, task, mesh, min_negatives)
