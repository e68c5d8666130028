"""train_and_evaluate for the reverse dictionary: the retrieval teacher job and the TGT student.

Jobs (config.job, configs/wordnet_retrieval.py):
  retrieval_teacher   the large dual encoder on every train pair (in-batch softmax);
                      it also mines hard negatives and embeds the documents (retrieval_teacher.py)
  retrieval           the small dual encoder on `data.num_pairs` labelled pairs, trained with
                      the classification job's TGT step mapped onto candidate documents
                      (retrieval_tgt.py); the text VAE of configs/wordnet.py:job=teacher explores
Both evaluate test (and validation) queries against every document: recall@1/10, MRR.
The student job resumes from its latest intact checkpoint, like train.py.
"""

import logging
import time

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from tgt_jax import (checkpointing, metrics, retrieval_teacher, retrieval_tgt, sharding,
                     teacher, tgt, train)
from tgt_jax.data import reverse_dictionary, wordnet
from tgt_jax.models import dual_encoder

JOBS = ("retrieval_teacher", "retrieval")
EVAL_SPLITS = ("test", "validation")


def validate_config(config):
  """Fail before any work, naming the bad value."""
  if config.job not in JOBS:
    raise ValueError(f"Unknown job {config.job!r}; choose one of {list(JOBS)}.")
  for name in (config.student.model, config.retrieval_teacher.model):
    if name not in dual_encoder.DUAL_ENCODERS:
      raise ValueError(f"Unknown dual encoder model name {name!r}; "
                       f"known: {sorted(dual_encoder.DUAL_ENCODERS)}.")
  if config.retrieval.score_temperature <= 0:
    raise ValueError("retrieval.score_temperature must be > 0, got "
                     f"{config.retrieval.score_temperature}.")
  if not 0 <= config.retrieval.hard_negatives <= config.retrieval_teacher.mined_negatives:
    raise ValueError(f"retrieval.hard_negatives={config.retrieval.hard_negatives} must be "
                     "between 0 and retrieval_teacher.mined_negatives="
                     f"{config.retrieval_teacher.mined_negatives}.")
  if config.job == "retrieval":
    cfg = train.tgt_config(config)     # validates method, σ, η, k, ε, m, τ
    if cfg.method == "kd_mixup":
      raise ValueError("method 'kd_mixup' mixes continuous inputs; queries are token ids. "
                       f"Choose one of {[m for m in tgt.METHODS if m != 'kd_mixup']}.")
    train.check_loop_settings(config)


def train_and_evaluate(config, workdir):
  """Runs the retrieval job in `config` in `workdir` (resuming if it holds a checkpoint)."""
  validate_config(config)
  epath.Path(workdir).mkdir(parents=True, exist_ok=True)
  return {"retrieval_teacher": run_teacher_job, "retrieval": run_student_job}[config.job](
      config, workdir)


def run_teacher_job(config, workdir):
  start = time.time()
  mesh = sharding.make_mesh()
  sharding.check_batch_size(config.retrieval_teacher.batch_size, mesh,
                            "retrieval_teacher.batch_size")
  sharding.check_batch_size(config.eval_batch_size, mesh, "eval_batch_size")
  task = reverse_dictionary.load_task(config.data)
  meta, params, doc_emb, negatives = retrieval_teacher.train(config, task, mesh)
  directory = retrieval_teacher.directory_of(config, workdir)
  retrieval_teacher.save(directory, meta, params, doc_emb, negatives)
  results = {"job": "retrieval_teacher", "retrieval_teacher_dir": directory,
             "model": meta["model"], "seed": meta["seed"], **meta["report"],
             **{k: meta["report"]["test"][k] for k in ("recall@1", "recall@10", "mrr")},
             "num_train_pairs": len(task.doc_ids["train"]), "num_documents": len(task.documents),
             "wall_time_sec": time.time() - start}
  train.write_json(workdir, "results.json", results)
  return results


def text_teacher_dir(config, workdir):
  return config.teacher.dir or str(epath.Path(workdir) / "teacher")


def load_text_teacher(config, workdir, task, mesh):
  """(tgt.Teacher, generator params) of the sequence VAE that explores queries."""
  directory = text_teacher_dir(config, workdir)
  if not teacher.exists(directory):
    raise FileNotFoundError(
        f"No text teacher (sequence VAE) at {directory!r}, which method {config.method!r} "
        "explores with. Run python -m tgt_jax.main --config=configs/wordnet.py:job=teacher "
        "--workdir=W with the same data.dir, data.max_len and data.vocab_size (it writes "
        "W/teacher), then set config.teacher.dir=W/teacher.")
  dataset = task.dataset
  meta, params = teacher.load(directory, dataset.image_shape, dataset.num_classes, mesh=mesh,
                              vocabulary=dataset.vocabulary)
  return teacher.as_functions(meta), params["generator"]


def run_student_job(config, workdir):
  start_time = time.time()
  cfg = train.tgt_config(config)
  mesh = sharding.make_mesh()
  sharding.check_batch_size(config.batch_size, mesh)
  sharding.check_batch_size(config.eval_batch_size, mesh, "eval_batch_size")
  task = reverse_dictionary.load_task(config.data)
  rows = reverse_dictionary.labelled_rows(len(task.doc_ids["train"]), config.data.num_pairs,
                                          config.seed)
  k = config.retrieval.hard_negatives
  needs_scores = cfg.alpha_eff > 0 or cfg.lam_eff > 0
  scorer = teacher_params = teacher_doc_emb = teacher_meta = None
  negatives = np.zeros((len(rows), 0), np.int64)
  generator_fns = retrieval_tgt.no_generator()
  if (needs_scores or k > 0) and not config.eval_only:
    teacher_meta, scorer, scorer_params, teacher_doc_emb, mined = retrieval_teacher.load_or_train(
        config, workdir, task, mesh, min_negatives=k)
    negatives = mined[rows, :k]
    if needs_scores:
      teacher_params = {"scorer": scorer_params}
      if cfg.needs_generator:
        generator_fns, teacher_params["generator"] = load_text_teacher(config, workdir, task,
                                                                       mesh)
  pairs = reverse_dictionary.Pairs(task.queries["train"][rows], task.doc_ids["train"][rows],
                                   negatives)

  model = dual_encoder.dual_encoder(config.student.model, len(task.query_vocabulary),
                                    len(task.documents.vocabulary))
  tx = train.make_optimizer(config.optimizer, config.num_train_steps)
  init_key, step_key = jax.random.split(jax.random.key(config.seed))
  params = retrieval_teacher.init_params(model, task, init_key)
  state = sharding.replicate(mesh, train.TrainState(jnp.asarray(0, jnp.int32), params,
                                                    tx.init(params)))

  def evaluate(params, split_names):
    doc_emb = retrieval_tgt.embed(model, params, task.documents.tokens, "documents",
                                  config.eval_batch_size, mesh)
    return {name: retrieval_tgt.rank_report(model, params, task.queries[name],
                                            task.doc_ids[name], doc_emb, config.eval_batch_size,
                                            mesh) for name in split_names}

  ckpt = checkpointing.Checkpointer(epath.Path(workdir) / "checkpoints", config.keep_checkpoints)
  try:
    state = train.restore_or_start(ckpt, state, config)
    if not config.eval_only:
      loop = _Loop(config, cfg, workdir, mesh, model, tx, task, scorer if needs_scores else None,
                   generator_fns, teacher_params, teacher_doc_emb, ckpt, evaluate)
      state = loop.run(state, pairs, step_key)
  finally:
    ckpt.close()

  reports = evaluate(state.params, EVAL_SPLITS)
  writer = metrics.MetricWriter(workdir)
  writer.scalars(int(state.step), {f"{name}/{key}": reports[name][key] for name in EVAL_SPLITS
                                   for key in ("recall@1", "recall@10", "mrr")})
  writer.close()
  results = {
      "job": "retrieval", "eval_only": bool(config.eval_only),
      "checkpoint_step": int(state.step), "method": cfg.method, "seed": config.seed,
      "num_pairs": int(config.data.num_pairs), "student_model": config.student.model,
      **reports, **{key: reports["test"][key] for key in ("recall@1", "recall@10", "mrr")},
      "hard_negatives": k, "score_temperature": config.retrieval.score_temperature,
      "num_documents": len(task.documents), "num_train_steps": config.num_train_steps,
      "batch_size": config.batch_size, "tgt": config.tgt.to_dict(),
      "retrieval_teacher_dir": (retrieval_teacher.directory_of(config, workdir)
                                if teacher_meta else None),
      "retrieval_teacher_report": (teacher_meta or {}).get("report"),
      "text_teacher_dir": text_teacher_dir(config, workdir) if cfg.needs_generator else None,
      "num_devices": int(mesh.devices.size), "num_processes": jax.process_count(),
      "wall_time_sec": time.time() - start_time,
  }
  train.write_json(workdir, "results.json", results)
  return results


class _Loop:
  """Steps from state.step to num_train_steps, with logging, samples, evaluation, checkpoints."""

  def __init__(self, config, cfg, workdir, mesh, model, tx, task, scorer, generator_fns,
               teacher_params, teacher_doc_emb, ckpt, evaluate):
    self.config, self.cfg, self.workdir, self.mesh, self.task = config, cfg, workdir, mesh, task
    self.teacher_params, self.teacher_doc_emb = teacher_params, teacher_doc_emb
    self.ckpt, self.evaluate = ckpt, evaluate
    self.query_vocabulary = wordnet.Vocabulary(task.query_vocabulary)
    temperature = config.retrieval.score_temperature
    self.train_step = retrieval_tgt.make_train_step(model, tx, cfg, scorer, generator_fns,
                                                    temperature, mesh)
    self.probe = (retrieval_tgt.make_probe(model, cfg, scorer, generator_fns, temperature, mesh,
                                           config.grid_examples)
                  if cfg.uses_synthetic else None)

  def batch(self, pairs, step):
    config = self.config
    unlabelled = self.task.queries["train"] if self.cfg.method == "kd_transfer" else None
    return sharding.to_global(self.mesh, reverse_dictionary.student_batch(
        pairs, self.task.documents, config.batch_size, config.seed, step, unlabelled,
        self.cfg.num_samples))

  def run(self, state, pairs, step_key):
    config, ckpt = self.config, self.ckpt
    first_step, total = int(state.step), config.num_train_steps
    writer = metrics.MetricWriter(self.workdir)
    progress = metrics.Progress(total, first_step)
    with checkpointing.PreemptionWatch() as preemption:
      for step in range(first_step, total):
        batch = self.batch(pairs, step)
        is_log_step = (step + 1) % config.log_every == 0 or step + 1 == total
        is_save_step = (step + 1) % config.checkpoint_every == 0 or step + 1 == total
        if is_log_step and self.probe is not None:
          stats, samples = jax.device_get(self.probe(state, self.teacher_params, batch, step_key))
          writer.text(step + 1, "real_explored", self.samples_text(samples))
        state, terms = self.train_step(state, self.teacher_params, batch, step_key)
        preempted = preemption.reached(step + 1)
        if is_log_step or is_save_step or preempted:   # never save what was not checked finite
          scalars = {k: float(v) for k, v in jax.device_get(terms).items()}
          _check_finite(scalars, step + 1, ckpt)
        if is_log_step:
          if self.probe is not None:
            scalars.update({k: float(v) for k, v in stats.items()})
          timing = progress.update(step + 1)
          writer.scalars(step + 1, {**{f"train/{k}": v for k, v in scalars.items()}, **timing})
          logging.info(metrics.format_progress(step + 1, total, timing, scalars))
        if (step + 1) % config.eval_every == 0 and step + 1 < total:
          val = self.evaluate(state.params, ("validation",))["validation"]
          writer.scalars(step + 1, {f"validation/{k}": val[k]
                                    for k in ("recall@1", "recall@10", "mrr")})
        if is_save_step or preempted:
          ckpt.save(step + 1, state, {"step": step + 1, "method": self.cfg.method})
        if preempted:
          ckpt.wait()
          writer.close()
          raise checkpointing.Preempted(
              f"Preempted: saved step {step + 1} to {ckpt.directory}; run the same command to "
              "resume from it.")
    writer.close()
    return state

  def samples_text(self, samples):
    """Real and explored queries, each with the teacher's best document among all of them."""
    words, docs = self.query_vocabulary.decode, self.task.documents.texts
    top = lambda emb: docs[int(np.argmax(self.teacher_doc_emb @ np.asarray(emb)))]
    m = self.cfg.num_samples
    blocks = []
    for i in range(len(samples["real"])):
      lines = [f"#{i}  [true: {docs[int(samples['positive_id'][i])]}]",
               f"  real     | {words(samples['real'][i])}  → {top(samples['real_embedding'][i])}"]
      if "decoded" in samples:
        lines.append(f"  decoded  | {words(samples['decoded'][i])}")
      for j in range(i * m, (i + 1) * m):
        lines.append(f"  explored | {words(samples['explored'][j])}  → "
                     f"{top(samples['explored_embedding'][j])}")
      blocks.append("\n".join(lines))
    header = ("# real | decoded = G(E(x)) | explored queries, each → the teacher's best document "
              "among all documents\n\n")
    return header + "\n\n".join(blocks) + "\n"


def _check_finite(scalars, step, ckpt):
  bad = sorted(k for k, v in scalars.items() if not np.isfinite(v))
  if bad:
    ckpt.wait()
    raise FloatingPointError(
        f"Non-finite loss terms {bad} at step {step} "
        f"({', '.join(f'{k}={scalars[k]}' for k in bad)}); nothing was saved from this step. "
        f"Last good checkpoint: step {ckpt.latest_step()} in {ckpt.directory}.")
