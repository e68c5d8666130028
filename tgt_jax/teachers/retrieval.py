"""The retrieval teacher: a large dual encoder trained on every labelled train pair.

It plays T (the labeler) of TGT for retrieval: its scores against a step's
candidate documents are the soft labels the student distils. Trained once, it
also mines each train query's hard negatives (its best-scoring wrong documents)
and embeds every document, and stores both next to its parameters, so the
student runs (methods × seeds × label budgets) never repeat that work.

A hybrid scorer (`dual_hybrid`: sub-word features and a learned TF-IDF term,
models/dual_encoder.py) is built from tables that are functions of the data:
the documents' hashed character n-grams and the query words' idf.

Its report ranks validation and test queries against every document and splits
the figures by the target document: was it ever a train positive, does it hold
a query-vocabulary word. Beside the teacher stand its dense part alone and the
TF-IDF term alone (the lexical reference: no training), on the same splits.

`minilm` is zero-shot: a published sentence encoder, nothing fitted
(teachers/retrieval_zero_shot.py). It stores the same files, with the table from
the text VAE's words to the encoder's WordPiece ids as its params/; its report
sets the query through that table beside its own text.

On disk: params/ (orbax), document_index.npz, train_hard_negatives.npy and,
written last so that it marks the directory complete, retrieval_teacher.json
(model, vocabulary fingerprints, report).
"""

import json
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from tgt_jax import checkpointing, sharding
from tgt_jax.engine import artifacts
from tgt_jax.teachers import generative
from tgt_jax.data import reverse_dictionary, subwords
from tgt_jax.evaluation import retrieval
from tgt_jax.models import dual_encoder
from tgt_jax.teachers import retrieval_zero_shot, text_encoder, training

META_FILE = "retrieval_teacher.json"
DOCUMENT_INDEX = "document_index.npz"
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


def build(meta, task):
  """The teacher's model; a hybrid one gets its n-gram table and idf from the data."""
  tables = {}
  if meta["model"] in dual_encoder.HYBRID:
    buckets = dual_encoder.subword_buckets(meta["model"])
    tables = {"subwords": subwords.ngram_ids(task.documents.vocabulary, buckets),
              "lexical_idf": reverse_dictionary.query_word_idf(task.documents,
                                                               len(task.query_vocabulary))}
  return dual_encoder.dual_encoder(meta["model"], meta["query_vocab_size"],
                                   meta["doc_vocab_size"], **tables)


def subword_stats(task, model_name):
  """What the n-gram hashing of the document vocabulary costs: collisions and truncation."""
  if model_name not in dual_encoder.HYBRID:
    return None
  buckets, vocabulary = dual_encoder.subword_buckets(model_name), task.documents.vocabulary
  distinct, rate = subwords.collision_rate(vocabulary, buckets)
  return {"buckets": buckets, "distinct_ngrams": distinct, "collision_rate": rate,
          "expected_collision_rate": subwords.expected_collision_rate(distinct, buckets),
          "truncated_words": subwords.truncated_fraction(vocabulary)}


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
  """(meta, params, document index, hard_negatives): fit on all train pairs, mine, report.

  With `run_dir`, the fit checkpoints there and a restarted job resumes from it.
  """
  rcfg = config.retrieval_teacher
  if rcfg.model in retrieval_zero_shot.MODELS:
    return zero_shot(config, task, mesh)
  meta = {"model": rcfg.model, **fingerprints(task),
          "score_temperature": float(config.retrieval.score_temperature),
          "steps": int(rcfg.steps), "batch_size": int(rcfg.batch_size), "seed": int(rcfg.seed)}
  model = build(meta, task)
  stream = lambda start: reverse_dictionary.pair_stream(
      task.queries["train"], task.doc_ids["train"], task.documents, rcfg.batch_size, rcfg.seed,
      start)
  params = training.fit(
      in_batch_loss(model, config.retrieval.score_temperature),
      init_params(model, task, jax.random.key(rcfg.seed)), stream, steps=rcfg.steps,
      batch_size=rcfg.batch_size, learning_rate=rcfg.learning_rate, seed=rcfg.seed, mesh=mesh,
      name="retrieval teacher", log_every=rcfg.log_every, run_dir=run_dir,
      evaluate=validation_curve(model, task, rcfg.eval_queries, config.eval_batch_size, mesh),
      eval_every=rcfg.eval_every)
  index = retrieval.index_documents(model, params, task.documents.tokens,
                                    config.eval_batch_size, mesh)
  if "lexical_weight" in params["params"]:
    params, meta["lexical_weight"] = calibrate_lexical_weight(
        model, params, task, index, rcfg.eval_queries, config.eval_batch_size, mesh)
  meta["subwords"] = subword_stats(task, rcfg.model)
  meta["diagnostics"] = diagnostics(model, params, task, index, config.eval_batch_size, mesh)
  meta["report"] = {name: meta["diagnostics"][name]["teacher"]["all"]
                    for name in ("test", "validation")}
  train_emb = retrieval.embed(model, params, task.queries["train"], "queries",
                              config.eval_batch_size, mesh)
  keys = task.documents.keys
  negatives = retrieval.mine_hard_negatives(train_emb, index, keys[task.doc_ids["train"]],
                                            keys, rcfg.mined_negatives)
  meta["mined_negatives"] = int(rcfg.mined_negatives)
  return meta, params, index, negatives


def zero_shot(config, task, mesh):
  """train()'s result for a published encoder: nothing fitted; report, index, negatives."""
  made, params, index, negatives, ranks = retrieval_zero_shot.make(config, task, mesh)
  meta = {**made, **fingerprints(task),
          "score_temperature": float(config.retrieval.score_temperature),
          "mined_negatives": int(config.retrieval_teacher.mined_negatives)}
  meta["diagnostics"] = {split: split_report(task, split, {
      **by_scorer, "lexical_only": lexical_ranks(task, split, config.eval_batch_size, mesh)})
                         for split, by_scorer in ranks.items()}
  meta["report"] = {name: meta["diagnostics"][name]["teacher"]["all"]
                    for name in ("test", "validation")}
  meta["subwords"] = None
  return meta, params, index, negatives


def validation_curve(model, task, num_queries, batch_size, mesh):
  """params → validation recall@1/10 and MRR of the first `num_queries` against every document."""
  queries = task.queries["validation"][:num_queries]
  targets = task.doc_ids["validation"][:num_queries]

  def evaluate(params):
    index = retrieval.index_documents(model, params, task.documents.tokens, batch_size, mesh)
    report = retrieval.rank_report(model, params, queries, targets, index, batch_size, mesh)
    out = {f"validation/{k}": report[k] for k in ("recall@1", "recall@10", "mrr")}
    if "lexical_weight" in params["params"]:
      out["lexical_weight"] = float(params["params"]["lexical_weight"])
    return out

  return evaluate


LEXICAL_SCALES = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0)


def calibrate_lexical_weight(model, params, task, index, num_queries, batch_size, mesh):
  """(params with β rescaled, record): the β·s of LEXICAL_SCALES with the best validation MRR.

  In training the dense score fits the train pairs ever better, so the β it
  learns there weighs the TF-IDF term for documents it has seen; β is chosen
  again on the first `num_queries` validation glosses (the test split is never
  looked at). Scaling the query's lexical part by s is exactly β → β·s.
  """
  queries = task.queries["validation"][:num_queries]
  targets = task.doc_ids["validation"][:num_queries]
  query_emb = retrieval.embed(model, params, queries, "queries", batch_size, mesh)
  width = index["dense"].shape[1]
  mrr = {}
  for scale in LEXICAL_SCALES:
    scaled = np.concatenate([query_emb[:, :width], scale * query_emb[:, width:]], axis=1)
    mrr[scale] = retrieval.retrieval_report(
        retrieval.ranks_of(scaled, targets, index, batch_size, mesh))["mrr"]
  best = max(LEXICAL_SCALES, key=lambda scale: (mrr[scale], -abs(np.log(scale))))
  learned = float(params["params"]["lexical_weight"])
  params = jax.tree.map(lambda x: x, params)
  params["params"]["lexical_weight"] = jnp.asarray(learned * best, jnp.float32)
  record = {"learned": learned, "scale": best, "chosen": learned * best,
            "validation_queries": len(targets),
            "validation_mrr_by_scale": {str(k): v for k, v in mrr.items()}}
  logging.info("Retrieval teacher: lexical weight %.3f → %.3f (validation MRR %s).", learned,
               learned * best, {k: round(v, 4) for k, v in mrr.items()})
  return params, record


def target_groups(task, split):
  """[Q] masks of a split's queries by their target document (the report's columns)."""
  keys, tokens = task.documents.keys, task.documents.tokens
  targets = task.doc_ids[split]
  seen = np.isin(keys[targets], keys[task.doc_ids["train"]])
  query_vocab = len(task.query_vocabulary)
  matchable = reverse_dictionary.query_word_idf(task.documents, query_vocab) > 0
  has_word = np.any(matchable[np.minimum(tokens[targets], query_vocab - 1)]
                    & (tokens[targets] < query_vocab), axis=1)
  return {"seen_positive": seen, "unseen_positive": ~seen,
          "has_query_word": has_word, "no_query_word": ~has_word}


TIE_BREAK = 1e-6                   # ≪ the smallest gap between two distinct TF-IDF cosines


def lexical_reference(task, batch_size, mesh, seed=0):
  """(query embedding fn, index): TF-IDF over query words alone, as the hybrid's term.

  Most documents share no word with a query and score 0. Ranks count ties in
  the target's favour, which would flatter a lexical score, so each lemma set
  adds a fixed random TIE_BREAK·u (equal for identical sets, which stay tied).
  """
  query_vocab = len(task.query_vocabulary)
  idf = jnp.asarray(reverse_dictionary.query_word_idf(task.documents, query_vocab))
  fn = lambda _, q: jnp.concatenate(
      [jnp.ones((q.shape[0], 1)), dual_encoder.lexical_queries(q, idf, query_vocab)], -1)
  docs = lambda _, d: dict(zip(("tail_ids", "tail_weights"),
                               dual_encoder.lexical_documents(d, idf, query_vocab)))
  index = retrieval.embed_all(docs, {}, task.documents.tokens, batch_size, mesh)
  keys = task.documents.keys
  noise = np.random.default_rng(seed).random(int(keys.max()) + 1)[keys]
  index["dense"] = (TIE_BREAK * noise)[:, None].astype(np.float32)
  return fn, index


def lexical_ranks(task, split, batch_size, mesh):
  lexical_fn, lexical_index = lexical_reference(task, batch_size, mesh)
  return retrieval.ranks_of(retrieval.embed_all(lexical_fn, {}, task.queries[split], batch_size,
                                                mesh), task.doc_ids[split], lexical_index,
                            batch_size, mesh)


def split_report(task, split, ranks):
  """{scorer: {group: recall@1/10, MRR}, "group_sizes": ...} of a split's ranks by scorer."""
  groups = target_groups(task, split)
  out = {name: retrieval.group_report(r, groups) for name, r in ranks.items()}
  out["group_sizes"] = {name: int(np.sum(mask)) for name, mask in groups.items()}
  return out


def diagnostics(model, params, task, index, batch_size, mesh):
  """{split: {scorer: {group: recall@1/10, MRR}}} on validation and test (see the docstring)."""
  dense_width = index["dense"].shape[1]
  out = {}
  for split in ("test", "validation"):
    queries, targets = task.queries[split], task.doc_ids[split]
    query_emb = retrieval.embed(model, params, queries, "queries", batch_size, mesh)
    out[split] = split_report(task, split, {
        "teacher": retrieval.ranks_of(query_emb, targets, index, batch_size, mesh),
        "dense_only": retrieval.ranks_of(query_emb[:, :dense_width], targets,
                                         {"dense": index["dense"]}, batch_size, mesh),
        "lexical_only": lexical_ranks(task, split, batch_size, mesh)})
  return out


def identity(config, task):
  """The settings that give a retrieval teacher its meaning, with the data it saw."""
  rcfg = config.retrieval_teacher
  if rcfg.model in retrieval_zero_shot.MODELS:
    return {"retrieval_teacher.model": rcfg.model,
            "retrieval_teacher.encoder_files": text_encoder.published_checksums(
                text_encoder.encoder_dir(rcfg.encoder_dir)),
            "retrieval_teacher.max_pieces": int(rcfg.max_pieces),
            "retrieval_teacher.mined_negatives": int(rcfg.mined_negatives),
            "retrieval.score_temperature": float(config.retrieval.score_temperature),
            **fingerprints(task)}
  return {"retrieval_teacher.model": rcfg.model, "retrieval_teacher.steps": int(rcfg.steps),
          "retrieval_teacher.batch_size": int(rcfg.batch_size),
          "retrieval_teacher.learning_rate": float(rcfg.learning_rate),
          "retrieval_teacher.seed": int(rcfg.seed),
          "retrieval_teacher.mined_negatives": int(rcfg.mined_negatives),
          "retrieval.score_temperature": float(config.retrieval.score_temperature),
          **fingerprints(task)}


def save(directory, meta, params, index, negatives):
  """Arrays first, then params and the JSON (complete once the JSON exists), which records
  the sha256 of every file."""
  path = checkpointing.absolute(directory)
  if jax.process_index() == 0:
    path.mkdir(parents=True, exist_ok=True)
    with (path / DOCUMENT_INDEX).open("wb") as f:
      np.savez(f, **index)
    with (path / HARD_NEGATIVES).open("wb") as f:
      np.save(f, negatives)
  artifacts.save_params_then_json(path, params, META_FILE, meta,
                                  extra_files=(DOCUMENT_INDEX, HARD_NEGATIVES))


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


def load(directory, task, mesh, min_negatives=0, encoder_dir=None):
  """(meta, model, params, document index, train hard negatives), checked against the data.

  A zero-shot teacher's "model" is its text_encoder.Scorer and its params hold the
  encoder's published variables (from `encoder_dir`, default the one it was made
  with, whose files must still have the recorded sha256), the table and the index.
  """
  meta = read_meta(directory)
  for key, expected in fingerprints(task).items():
    if meta.get(key) != expected:
      raise ValueError(f"The retrieval teacher at {os.fspath(directory)!r} does not fit: the "
                       f"data/config expects {key} {expected}, the teacher has {meta.get(key)}.")
  if meta["mined_negatives"] < min_negatives:
    raise ValueError(f"retrieval.hard_negatives={min_negatives} exceeds the "
                     f"{meta['mined_negatives']} hard negatives mined by the teacher at "
                     f"{os.fspath(directory)!r} (its retrieval_teacher.mined_negatives).")
  path = checkpointing.absolute(directory)
  if meta["model"] in retrieval_zero_shot.MODELS:
    return load_zero_shot(directory, meta, mesh, encoder_dir or meta["encoder_dir"])
  model = build(meta, task)

  def on_mismatch(name, expected, found):
    raise ValueError(f"Retrieval teacher parameters in {os.fspath(directory)!r} do not match "
                     f"model {meta['model']!r}: parameter {name} expected shape {expected}, "
                     f"found {found}.")

  params = artifacts.restore_replicated(
      path / generative.PARAMS_DIR, lambda: init_params(model, task, jax.random.key(0)), mesh,
      on_mismatch, checksums=meta.get(artifacts.CHECKSUMS), what="retrieval teacher")
  index, negatives = _read_arrays(path)
  return meta, model, params, index, negatives


def _read_arrays(path):
  with (path / DOCUMENT_INDEX).open("rb") as f:
    index = dict(np.load(f))
  with (path / HARD_NEGATIVES).open("rb") as f:
    negatives = np.load(f)
  return index, negatives


def load_zero_shot(directory, meta, mesh, encoder_dir):
  """load() of a published-encoder teacher (see load)."""
  path = checkpointing.absolute(directory)
  table = retrieval_zero_shot.restore_table(path / generative.PARAMS_DIR, meta, mesh,
                                            encoder_dir, META_FILE)
  index, negatives = _read_arrays(path)
  scorer, params = retrieval_zero_shot.scorer_and_params(
      {**meta, "encoder_dir": encoder_dir}, table, index, mesh)
  return meta, scorer, params, index, negatives


_FIX = ("a retrieval teacher is never trained again under other settings; run with the "
        "settings it was made with, or point retrieval_teacher.dir at another directory")


def check_made_with(directory, config, task):
  """A named error if the retrieval teacher in `directory` was made with other settings
  (teachers made before identities were recorded are not checked)."""
  recorded = read_meta(directory).get("identity")
  if recorded is not None:
    artifacts.check_identity(recorded, identity(config, task), "retrieval teacher", directory,
                             _FIX)


def train_and_save(config, task, mesh, directory):
  """Trains (resuming) and saves the retrieval teacher under its directory's lock."""
  with artifacts.writing(directory, "retrieval teacher", config_key="retrieval_teacher.dir"):
    if exists(directory):         # another writer finished it while this one waited
      check_made_with(directory, config, task)
      return read_meta(directory)
    run_dir = training.run_dir_of(directory)
    artifacts.record_identity(run_dir, identity(config, task), "retrieval teacher training",
                              _FIX)
    meta, params, index, negatives = train(config, task, mesh, run_dir)
    meta["identity"] = identity(config, task)
    save(directory, meta, params, index, negatives)
    return meta


def load_or_train(config, workdir, task, mesh, min_negatives=0):
  """The configured retrieval teacher; trained and saved first if missing and allowed."""
  directory = directory_of(config, workdir)
  if not exists(directory):
    if not config.retrieval_teacher.train_if_missing:
      read_meta(directory)          # raises the clear "no retrieval teacher here" error
    logging.info("No retrieval teacher in %s: training one (config.retrieval_teacher).",
                 directory)
    train_and_save(config, task, mesh, directory)
  check_made_with(directory, config, task)
  encoder_dir = (text_encoder.encoder_dir(config.retrieval_teacher.encoder_dir)
                 if config.retrieval_teacher.model in retrieval_zero_shot.MODELS else None)
  return load(directory, task, mesh, min_negatives, encoder_dir)
