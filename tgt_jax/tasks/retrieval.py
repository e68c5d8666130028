"""The reverse dictionary: the retrieval teacher job and the TGT student (configs/wordnet_retrieval.py).

  retrieval_teacher   the large dual encoder on every train pair (in-batch softmax);
                      it also mines hard negatives and embeds the documents
                      (teachers/retrieval.py)
  retrieval           the small dual encoder on `data.num_pairs` labelled pairs, trained with
                      the classification step of TGT mapped onto candidate documents
                      (retrieval_step.py); the text VAE of configs/wordnet.py:job=teacher explores
Both evaluate test (and validation) queries against every document: recall@1/10, MRR.
Both train on the engine's loop, so both resume, log and stop like every training.
"""

import itertools
import time

import jax
import jax.numpy as jnp
import numpy as np

from tgt_jax import metrics, sharding, tgt, workdir as workdir_lib
from tgt_jax.teachers import generative
from tgt_jax.data import batches as batches_lib, reverse_dictionary, wordnet
from tgt_jax.engine import artifacts, loop, state as state_lib
from tgt_jax.evaluation import retrieval
from tgt_jax.models import dual_encoder
from tgt_jax.tasks import method, retrieval_step
from tgt_jax.teachers import retrieval as retrieval_teacher
from tgt_jax.teachers import retrieval_zero_shot, text_encoder
from tgt_jax.teachers import training

EVAL_SPLITS = ("test", "validation")
GRADIENT_METHODS = ("tgt_gradient", "tgt_gradient_input")
RANK_KEYS = ("recall@1", "recall@10", "mrr")


def validate(config):
  """Every value of both retrieval jobs, before any work, naming the bad value."""
  if config.student.model not in dual_encoder.DUAL_ENCODERS:
    raise ValueError(f"Unknown dual encoder model name {config.student.model!r}; "
                     f"known: {sorted(dual_encoder.DUAL_ENCODERS)}.")
  teacher = config.retrieval_teacher.model
  if teacher not in dual_encoder.DUAL_ENCODERS and teacher not in retrieval_zero_shot.MODELS:
    raise ValueError(f"Unknown retrieval_teacher.model {teacher!r}; known: "
                     f"{sorted(dual_encoder.DUAL_ENCODERS) + sorted(retrieval_zero_shot.MODELS)}.")
  if teacher in retrieval_zero_shot.MODELS:
    text_encoder.encoder_dir(config.retrieval_teacher.encoder_dir)   # names the pip command
    if config.retrieval_teacher.max_pieces < 1:
      raise ValueError("retrieval_teacher.max_pieces must be ≥ 1, got "
                       f"{config.retrieval_teacher.max_pieces}.")
  if config.retrieval.score_temperature <= 0:
    raise ValueError("retrieval.score_temperature must be > 0, got "
                     f"{config.retrieval.score_temperature}.")
  if not 0 <= config.retrieval.hard_negatives <= config.retrieval_teacher.mined_negatives:
    raise ValueError(f"retrieval.hard_negatives={config.retrieval.hard_negatives} must be "
                     "between 0 and retrieval_teacher.mined_negatives="
                     f"{config.retrieval_teacher.mined_negatives}.")
  if config.job == "retrieval":
    cfg = method.tgt_config(config)     # validates method, σ, η, k, ε, m, τ
    if cfg.method == "kd_mixup":
      raise ValueError("method 'kd_mixup' mixes continuous inputs; queries are token ids. "
                       f"Choose one of {[m for m in tgt.METHODS if m != 'kd_mixup']}.")
    if teacher in retrieval_zero_shot.MODELS and cfg.method in GRADIENT_METHODS:
      raise ValueError(f"method {cfg.method!r} is refused with retrieval_teacher.model="
                       f"{teacher!r}: its queries reach the encoder through a discrete word → "
                       "WordPiece table (a word's piece count moves every later piece), so no "
                       "gradient reaches the VAE's soft tokens; use tgt_random or tgt_prior.")
    state_lib.check_optimizer(config.optimizer)
    state_lib.check_loop_settings(config)


def run_teacher(config, workdir):
  """The retrieval teacher job: fit on every train pair (resuming), mine, embed, save."""
  start = time.time()
  mesh = sharding.mesh_for(**{"retrieval_teacher.batch_size": config.retrieval_teacher.batch_size,
                              "eval_batch_size": config.eval_batch_size})
  task = reverse_dictionary.load_task(config.data)
  directory = retrieval_teacher.directory_of(config, workdir)
  if retrieval_teacher.exists(directory):
    retrieval_teacher.check_made_with(directory, config, task)
  meta = retrieval_teacher.train_and_save(config, task, mesh, directory)
  results = {"job": "retrieval_teacher", "retrieval_teacher_dir": directory,
             "model": meta["model"], "seed": meta.get("seed"), **meta["report"],
             **{k: meta["report"]["test"][k] for k in RANK_KEYS},
             "diagnostics": meta["diagnostics"], "subwords": meta["subwords"],
             "num_train_pairs": len(task.doc_ids["train"]), "num_documents": len(task.documents),
             "wall_time_sec": time.time() - start}
  return artifacts.write_results(workdir, results)


def load_text_teacher(config, workdir, task, mesh):
  """(tgt.Teacher, generator params) of the sequence VAE that explores queries."""
  directory = training.teacher_dir(config, workdir)
  if not generative.exists(directory):
    raise FileNotFoundError(
        f"No text teacher (sequence VAE) at {directory!r}, which method {config.method!r} "
        "explores with. Run python -m tgt_jax.main --config=configs/wordnet.py:job=teacher "
        "--workdir=W with the same data.dir, data.max_len and data.vocab_size (it writes "
        "W/teacher), then set config.teacher.dir=W/teacher.")
  dataset = task.dataset
  meta, params = generative.load(directory, dataset.image_shape, dataset.num_classes, mesh=mesh,
                              vocabulary=dataset.vocabulary)
  return generative.as_functions(meta), params["generator"]


def run_student(config, workdir):
  """The retrieval student job: train (resuming), rank every split, write results.json."""
  start_time = time.time()
  cfg = method.tgt_config(config)
  mesh = sharding.mesh_for(batch_size=config.batch_size, eval_batch_size=config.eval_batch_size)
  if not config.eval_only:
    loop.refuse_shorter_run(workdir, config.num_train_steps)
  task = reverse_dictionary.load_task(config.data)
  rows = reverse_dictionary.labelled_rows(len(task.doc_ids["train"]), config.data.num_pairs,
                                          config.seed)
  k = config.retrieval.hard_negatives
  needs_scores = cfg.alpha_eff > 0 or cfg.lam_eff > 0
  scorer = teacher_params = teacher_index = teacher_meta = None
  negatives = np.zeros((len(rows), 0), np.int64)
  generator_fns = retrieval_step.no_generator()
  if (needs_scores or k > 0) and not config.eval_only:
    teacher_meta, scorer, scorer_params, teacher_index, mined = retrieval_teacher.load_or_train(
        config, workdir, task, mesh, min_negatives=k)
    scorer = retrieval_step.as_scorer(scorer)
    negatives = mined[rows, :k]
    identity = {"retrieval_teacher_params": artifacts.params_fingerprint(scorer_params),
                "retrieval_teacher_files": artifacts.checksums_fingerprint(teacher_meta)}
    if needs_scores:
      teacher_params = {"scorer": scorer_params}
      if cfg.needs_generator:
        generator_fns, teacher_params["generator"] = load_text_teacher(config, workdir, task,
                                                                       mesh)
        identity["teacher_params.generator"] = artifacts.params_fingerprint(
            teacher_params["generator"])
    # A resume must distil from the same teachers: one retrained in place is named.
    workdir_lib.record_or_check(workdir, identity, "retrieval student run's teacher",
                                file=workdir_lib.TEACHER_IDENTITY_FILE)
  pairs = reverse_dictionary.Pairs(task.queries["train"][rows], task.doc_ids["train"][rows],
                                   negatives)

  model = dual_encoder.dual_encoder(config.student.model, len(task.query_vocabulary),
                                    len(task.documents.vocabulary))
  tx = state_lib.make_optimizer(config.optimizer, config.num_train_steps)
  init_key, step_key = jax.random.split(jax.random.key(config.seed))
  params = retrieval_teacher.init_params(model, task, init_key)
  state = sharding.replicate(mesh, state_lib.TrainState(jnp.asarray(0, jnp.int32), params,
                                                        tx.init(params)))

  def evaluate(params, split_names):
    index = retrieval.index_documents(model, params, task.documents.tokens,
                                      config.eval_batch_size, mesh)
    return {name: retrieval.rank_report(model, params, task.queries[name], task.doc_ids[name],
                                        index, config.eval_batch_size, mesh)
            for name in split_names}

  writer = metrics.MetricWriter(workdir)
  ckpt = loop.checkpoints_of(workdir, config.keep_checkpoints, read_only=config.eval_only)
  try:
    state = loop.restore_or_start(ckpt, state, config.eval_only, config.eval_step)
    if not config.eval_only:
      parts = _LoopParts(config, cfg, mesh, model, tx, task, scorer if needs_scores else None,
                         generator_fns, teacher_params, teacher_index, writer, step_key)
      state = loop.train(
          state, parts.step, lambda start: parts.batches(pairs, start), ckpt, writer,
          loop.Schedule.of(config), mesh, probe=parts.probe if cfg.uses_synthetic else None,
          evaluate=lambda p: {f"validation/{k}": v for k, v in
                              evaluate(p, ("validation",))["validation"].items()
                              if k in RANK_KEYS},
          meta={"method": cfg.method})
  finally:
    ckpt.close()

  reports = evaluate(state.params, EVAL_SPLITS)
  writer.scalars(int(state.step), {f"{name}/{key}": reports[name][key] for name in EVAL_SPLITS
                                   for key in RANK_KEYS})
  writer.close()
  results = {
      "job": "retrieval", "eval_only": bool(config.eval_only),
      "checkpoint_step": int(state.step), "method": cfg.method, "seed": config.seed,
      "num_pairs": int(config.data.num_pairs), "student_model": config.student.model,
      **reports, **{key: reports["test"][key] for key in RANK_KEYS},
      "hard_negatives": k, "score_temperature": config.retrieval.score_temperature,
      "num_documents": len(task.documents), "num_train_steps": config.num_train_steps,
      "batch_size": config.batch_size, "tgt": config.tgt.to_dict(),
      "retrieval_teacher_dir": (retrieval_teacher.directory_of(config, workdir)
                                if teacher_meta else None),
      "retrieval_teacher_report": (teacher_meta or {}).get("report"),
      "text_teacher_dir": training.teacher_dir(config, workdir) if cfg.needs_generator else None,
      "num_devices": int(mesh.devices.size), "num_processes": jax.process_count(),
      "wall_time_sec": time.time() - start_time,
  }
  return artifacts.write_results(workdir, results)


def negative_rows(pairs, batch, batch_size, seed, step):
  """int32 [b, K]: the document rows of a student batch's hard negatives (a teacher that
  stores document embeddings, not a document tower, reads its candidates by row)."""
  rows = batches_lib.batch_rows(len(pairs), batch_size, seed, step)[
      sharding.process_rows(batch_size)]
  if not np.array_equal(pairs.doc_ids[rows], batch["positive_id"]):
    raise AssertionError(f"Student batch {step}: its rows are not the pairs' rows.")
  return pairs.negatives[rows].astype(np.int32)


class _LoopParts:
  """What the retrieval student job hands the engine's loop: its step, batches and probe."""

  def __init__(self, config, cfg, mesh, model, tx, task, scorer, generator_fns,
               teacher_params, teacher_index, writer, step_key):
    self.config, self.cfg, self.mesh, self.task, self.step_key = config, cfg, mesh, task, step_key
    self.teacher_params, self.teacher_index, self.writer = teacher_params, teacher_index, writer
    self.query_vocabulary = wordnet.Vocabulary(task.query_vocabulary)
    temperature = config.retrieval.score_temperature
    self._step = retrieval_step.make_train_step(model, tx, cfg, scorer, generator_fns,
                                                temperature, mesh)
    self._probe = (retrieval_step.make_probe(model, cfg, scorer, generator_fns, temperature,
                                             mesh, config.grid_examples)
                   if cfg.uses_synthetic else None)

  def step(self, state, batch):
    return self._step(state, self.teacher_params, batch, self.step_key)

  def batches(self, pairs, start_step):
    config = self.config
    unlabelled = self.task.queries["train"] if self.cfg.method == "kd_transfer" else None
    for step in itertools.count(start_step):
      batch = reverse_dictionary.student_batch(pairs, self.task.documents, config.batch_size,
                                               config.seed, step, unlabelled,
                                               self.cfg.num_samples)
      if "negatives" in batch:
        batch["negative_id"] = negative_rows(pairs, batch, config.batch_size, config.seed, step)
      yield batch

  def probe(self, state, batch, step_number):
    stats, samples = jax.device_get(self._probe(state, self.teacher_params, batch, self.step_key))
    self.writer.text(step_number, "real_explored", self.samples_text(samples))
    return stats

  def samples_text(self, samples):
    """Real and explored queries, each with the teacher's best document among all of them."""
    words, docs = self.query_vocabulary.decode, self.task.documents.texts
    num_real = len(samples["real"])
    best = retrieval.best_documents(
        np.concatenate([samples["real_embedding"], samples["explored_embedding"]]),
        self.teacher_index)
    m = self.cfg.num_samples
    blocks = []
    for i in range(num_real):
      lines = [f"#{i}  [true: {docs[int(samples['positive_id'][i])]}]",
               f"  real     | {words(samples['real'][i])}  → {docs[int(best[i])]}"]
      if "decoded" in samples:
        lines.append(f"  decoded  | {words(samples['decoded'][i])}")
      for j in range(i * m, (i + 1) * m):
        lines.append(f"  explored | {words(samples['explored'][j])}  → "
                     f"{docs[int(best[num_real + j])]}")
      blocks.append("\n".join(lines))
    header = ("# real | decoded = G(E(x)) | explored queries, each → the teacher's best document "
              "among all documents\n\n")
    return header + "\n\n".join(blocks) + "\n"

