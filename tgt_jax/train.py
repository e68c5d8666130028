"""train_and_evaluate(config, workdir): the teacher job or the TGT student job.

The student step is one `jax.jit` over a data mesh: the batch is sharded, the
student state and the teacher parameters are replicated, and only the student
state is donated and optimised. Batches and random keys are functions of
(seed, step), so a resumed run sees exactly the data and noise it would have.
"""

import json
import logging
import time
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from etils import epath
from jax.experimental import multihost_utils

from tgt_jax import (checkpointing, evaluation, metrics, models, pretrain, probe, sharding,
                     teacher, teacher_components, text_teacher, tgt, train_teacher)
from tgt_jax.data import augment, sources, subsets

JOBS = ("student", "teacher", "pretrain")


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any


def tgt_config(config):
  return tgt.TGTConfig(method=config.method, **config.tgt.to_dict())


def make_optimizer(ocfg, total_steps):
  schedule = optax.warmup_cosine_decay_schedule(
      0.0, ocfg.learning_rate, min(ocfg.warmup_steps, max(total_steps - 1, 0)), max(total_steps, 1))
  if ocfg.name == "adam":
    return optax.adamw(schedule, weight_decay=ocfg.weight_decay)
  if ocfg.name == "sgd":
    return optax.chain(optax.add_decayed_weights(ocfg.weight_decay),
                       optax.sgd(schedule, momentum=0.9, nesterov=True))
  if ocfg.name == "lamb":
    return optax.lamb(schedule, weight_decay=ocfg.weight_decay)
  raise ValueError(f"Unknown optimizer name {ocfg.name!r}; known: ['adam', 'lamb', 'sgd'].")


def resolve_durations(config, num_examples):
  """A copy of config with num_epochs / optimizer.warmup_epochs turned into steps.

  Epochs count passes over the student's own training set (num_examples), so a
  long-tailed subset gets as many passes as the full set would.
  """
  config = config.copy_and_resolve_references()
  steps_per_epoch = max(1, num_examples // config.batch_size)
  if config.get("num_epochs"):
    config.num_train_steps = int(round(config.num_epochs * steps_per_epoch))
  if config.optimizer.get("warmup_epochs"):
    config.optimizer.warmup_steps = int(round(config.optimizer.warmup_epochs * steps_per_epoch))
  return config


def make_train_step(student_apply, tx, cfg, teacher_fns, mesh, augment_name="none", fill=0.0):
  """The jitted, sharded TGT update: (state, teacher_params, batch, rng) → (state, terms)."""

  def train_step(state, teacher_params, batch, rng):
    rng = jax.random.fold_in(rng, state.step)
    batch = augment.augment_batch(augment_name, jax.random.fold_in(rng, augment.STREAM), batch,
                                  fill)
    targets = tgt.teacher_targets(rng, cfg, teacher_fns, teacher_params, student_apply,
                                  state.params, batch)
    return tgt.student_update(state, tx, student_apply, cfg, batch, targets)

  repl = sharding.replicated(mesh)
  return jax.jit(train_step, in_shardings=(repl, repl, sharding.batch_sharded(mesh), repl),
                 out_shardings=(repl, repl), donate_argnums=(0,))


def validate_config(config):
  """Fail before any work, naming the bad value."""
  if config.get("job", "student") not in JOBS:
    raise ValueError(f"Unknown job {config.job!r}; choose one of {list(JOBS)}.")
  if config.teacher.generator not in models.GENERATORS:
    raise ValueError(f"Unknown generator model name {config.teacher.generator!r}; "
                     f"known: {sorted(models.GENERATORS)}.")
  names = [config.teacher.labeler] + ([config.student.model] if config.job == "student" else [])
  for name in names:
    if name not in models.CLASSIFIERS:
      raise ValueError(f"Unknown classifier model name {name!r}; "
                       f"known: {sorted(models.CLASSIFIERS)}.")
  if config.job == "student":
    tgt_config(config)   # validates method, σ, η, k, ε, m, τ
    if config.data.name in sources.IN_MEMORY:
      augment.check(config.data.augment)
    check_loop_settings(config)


def check_loop_settings(config):
  """A student loop's durations and intervals (shared by the classification and retrieval jobs)."""
  if config.num_train_steps < 0:
    raise ValueError(f"num_train_steps must be >= 0, got {config.num_train_steps}.")
  for key in ("log_every", "eval_every", "checkpoint_every"):
    if config[key] < 1:
      raise ValueError(f"{key} must be >= 1, got {config[key]}.")


def teacher_dir(config, workdir):
  return config.teacher.dir or str(epath.Path(workdir) / "teacher")


def is_component_teacher(config):
  return config.teacher.get("kind", "") == "components"


def teacher_functions(meta):
  """tgt.Teacher of a loaded teacher: one trained by tgt_jax, or one from three parts."""
  if "encoder" in meta and isinstance(meta["encoder"], dict):
    return teacher_components.as_functions(meta)
  return teacher.as_functions(meta)


def load_component_teacher(config, workdir, source, mesh):
  """E, G and T from config.teacher.{encoder,generator,labeler}_dir (BigBiGAN-shaped)."""
  tconfig = config.teacher.to_dict()
  missing = [k for k in ("encoder_dir", "generator_dir", "labeler_dir")
             if not tconfig.get(k) or not epath.Path(tconfig[k]).exists()]
  if missing and tconfig.get("random_init_if_missing"):
    logging.warning("Teacher parts %s missing: writing RANDOM untrained parts (smoke runs "
                    "only; config.teacher.random_init_if_missing).", missing)
    tconfig.update(teacher_components.init_random_components(
        epath.Path(workdir) / "random_teacher_parts", source.image_shape, source.num_classes,
        encoder=tconfig["encoder"], generator=tconfig["generator"], labeler=tconfig["labeler"],
        latent_dim=tconfig["latent_dim"], pixel_range=source.pixel_range))
  return teacher_components.load_teacher(tconfig, source.image_shape, source.num_classes, mesh)


def load_or_train_teacher(config, workdir, source, mesh):
  """(meta, params) of the configured teacher; trains and saves it first if missing and allowed."""
  if is_component_teacher(config):
    return load_component_teacher(config, workdir, source, mesh)
  directory = teacher_dir(config, workdir)
  if not teacher.exists(directory):
    if not config.teacher.train_if_missing:
      teacher.read_meta(directory)     # raises the clear "no teacher here" error
    logging.info("No teacher in %s: training one (config.teacher).", directory)
    meta, params, report = train_teacher.train(config.teacher, source, mesh, seed=0)
    meta["report"] = report
    teacher.save(directory, meta, params)
    logging.info("Teacher report: %s", json.dumps(report))
  return teacher.load(directory, source.image_shape, source.num_classes,
                      latent_dim=config.teacher.latent_dim, mesh=mesh,
                      vocabulary=source.vocabulary)


def write_json(workdir, name, payload):
  if jax.process_index() == 0:
    path = epath.Path(workdir) / name
    path.write_text(json.dumps(payload, indent=2, sort_keys=True))
    logging.info("Wrote %s", path)


def run_teacher_job(config, workdir):
  source = sources.make_source(config)
  mesh = sharding.make_mesh()
  start = time.time()
  meta, params, report = train_teacher.train(config.teacher, source, mesh, seed=config.seed)
  meta["report"] = report
  directory = teacher_dir(config, workdir)
  teacher.save(directory, meta, params)
  if source.vocabulary is not None and jax.process_index() == 0:
    samples = text_teacher.teacher_samples(meta, params, source.sample("test", 16), mesh,
                                           source.vocabulary, source.class_names)
    (epath.Path(directory) / "samples.txt").write_text(samples)
  results = {"job": "teacher", "teacher_dir": directory, "seed": config.seed,
             "wall_time_sec": time.time() - start, **report}
  write_json(workdir, "results.json", results)
  return results


def train_and_evaluate(config, workdir):
  """Runs the job in `config` in `workdir` (resuming if it holds a checkpoint); returns results."""
  if config.get("job", "").startswith("retrieval"):      # configs/wordnet_retrieval.py
    from tgt_jax import train_retrieval  # pylint: disable=g-import-not-at-top
    return train_retrieval.train_and_evaluate(config, workdir)
  validate_config(config)
  epath.Path(workdir).mkdir(parents=True, exist_ok=True)
  run_job = {"teacher": run_teacher_job, "student": run_student_job,
             "pretrain": pretrain.run_pretrain_job}[config.job]
  results = run_job(config, workdir)
  if jax.process_count() > 1:     # nobody exits while another process still needs it
    multihost_utils.sync_global_devices("train_and_evaluate done")
  return results


def build_student(config, source):
  return models.classifier(config.student.model, source.num_classes,
                           config.student.get("dtype") or None,
                           vocab_size=len(source.vocabulary) if source.vocabulary else None)


def init_student(config, source, mesh):
  """(module, optimizer, replicated step-0 state, key of the per-step noise) from the seed.

  With config.student.init_from, every parameter but the classification head
  starts from that pretrained student (pretrain.py).
  """
  student = build_student(config, source)
  tx = make_optimizer(config.optimizer, config.num_train_steps)
  init_key, step_key = jax.random.split(jax.random.key(config.seed))
  params = student.init(init_key, jnp.zeros((1, *source.image_shape), source.input_dtype))
  if config.student.get("init_from"):
    params = pretrain.load_into(params, config.student.init_from, config.student.model,
                                source.vocabulary)
  state = sharding.replicate(mesh, TrainState(jnp.asarray(0, jnp.int32), params, tx.init(params)))
  return student, tx, state, step_key


def restore_or_start(ckpt, state, config):
  """The state to start from: checkpoint eval_step (eval_only), else the latest intact
  checkpoint, else `state` itself (an eval_only run needs a checkpoint)."""
  if config.eval_only and config.eval_step:
    return ckpt.restore(state, config.eval_step)[0]
  restored = ckpt.restore_latest_intact(state)
  if restored is None and config.eval_only:
    raise FileNotFoundError(f"eval_only: no student checkpoint in {ckpt.directory}.")
  return restored[0] if restored else state


def run_student_job(config, workdir):
  start_time = time.time()
  cfg = tgt_config(config)
  mesh = sharding.make_mesh()
  sharding.check_batch_size(config.batch_size, mesh)
  sharding.check_batch_size(config.eval_batch_size, mesh, "eval_batch_size")
  source = sources.make_source(config)
  counts = source.counts
  config = resolve_durations(config, int(np.sum(counts)))
  subset = subsets.describe(config.data.labels_per_class, config.data.imbalance,
                            config.data.get("num_labels", 0))
  logging.info("Student subset: %s, %d examples, per class %s", subset, int(np.sum(counts)),
               counts.tolist())

  needs_teacher = cfg.alpha_eff > 0 or cfg.lam_eff > 0
  teacher_meta = teacher_params = None
  if needs_teacher and not config.eval_only:
    teacher_meta, teacher_params = load_or_train_teacher(config, workdir, source, mesh)
  elif (needs_teacher and not is_component_teacher(config)
        and teacher.exists(teacher_dir(config, workdir))):   # for the report only
    teacher_meta = teacher.read_meta(teacher_dir(config, workdir))

  student, tx, state, step_key = init_student(config, source, mesh)

  ckpt = checkpointing.Checkpointer(epath.Path(workdir) / "checkpoints", config.keep_checkpoints)
  predict = evaluation.make_predict(student.apply, mesh)
  groups = subsets.class_groups(counts)

  def evaluate(params, split_name):
    return source.evaluate(predict, params, split_name, config.eval_batch_size, mesh, groups)

  try:
    state = restore_or_start(ckpt, state, config)
    if not config.eval_only:
      state = _train_loop(config, cfg, workdir, mesh, student, tx, state, teacher_meta,
                          teacher_params, source, ckpt, evaluate, step_key)
  finally:
    ckpt.close()
  total = int(state.step)

  reports = {name: evaluate(state.params, name) for name in source.eval_split_names}
  test = reports.get("test", reports[source.eval_split_names[0]])
  writer = metrics.MetricWriter(workdir)
  writer.scalars(total, {f"{name}/balanced_accuracy": r["balanced_accuracy"]
                         for name, r in reports.items()})
  writer.close()
  results = {
      "eval_only": bool(config.eval_only), "checkpoint_step": total,
      "method": cfg.method, "seed": config.seed, "student_model": config.student.model,
      "data": {"name": config.data.name,
               "subset": subset, "labels_per_class": config.data.labels_per_class,
               "imbalance": config.data.imbalance, "class_counts": counts.tolist(),
               "num_labelled": int(np.sum(counts)), "class_groups": groups},
      **reports, "test": test, "test_accuracy": test["balanced_accuracy"],
      "num_train_steps": config.num_train_steps, "batch_size": config.batch_size,
      "tgt": config.tgt.to_dict(),
      "teacher_dir": teacher_dir(config, workdir) if needs_teacher else None,
      "teacher_report": (teacher_meta or {}).get("report"),
      "num_devices": int(mesh.devices.size), "num_processes": jax.process_count(),
      "wall_time_sec": time.time() - start_time,
  }
  write_json(workdir, "results.json", results)
  return results


def _train_loop(config, cfg, workdir, mesh, student, tx, state, teacher_meta, teacher_params,
                source, ckpt, evaluate, step_key):
  """Steps from state.step to num_train_steps; returns the final state (saved)."""
  teacher_fns = teacher_functions(teacher_meta) if teacher_meta else None
  fill = float(source.pixel_range[0])        # the background of digits: black
  train_step = make_train_step(student.apply, tx, cfg, teacher_fns, mesh, source.step_augment,
                               fill)
  probe_fn = (probe.make_probe(student.apply, cfg, teacher_fns, mesh, config.grid_examples,
                              source.step_augment, fill) if cfg.uses_synthetic else None)
  first_step, total = int(state.step), config.num_train_steps
  writer = metrics.MetricWriter(workdir)
  progress = metrics.Progress(total, first_step)
  stream = source.student_batches(cfg.method, cfg.num_samples, first_step)
  with checkpointing.PreemptionWatch() as preemption:
    for step in range(first_step, total):
      batch = sharding.to_global(mesh, next(stream))
      is_log_step = (step + 1) % config.log_every == 0 or step + 1 == total
      is_save_step = (step + 1) % config.checkpoint_every == 0 or step + 1 == total
      if is_log_step and probe_fn is not None:
        stats, samples = jax.device_get(probe_fn(state, teacher_params, batch, step_key))
        probe.write_samples(writer, step + 1, samples, source, cfg.num_samples)
      state, terms = train_step(state, teacher_params, batch, step_key)
      preempted = preemption.reached(step + 1)
      if is_log_step or is_save_step or preempted:   # never save what was not checked finite
        scalars = {k: float(v) for k, v in jax.device_get(terms).items()}
        _check_finite(scalars, step + 1, ckpt)
      if is_log_step:
        if probe_fn is not None:
          scalars.update({k: float(v) for k, v in stats.items()})
        timing = progress.update(step + 1)
        writer.scalars(step + 1, {**{f"train/{k}": v for k, v in scalars.items()}, **timing})
        logging.info(metrics.format_progress(step + 1, total, timing, scalars))
      if (step + 1) % config.eval_every == 0 and step + 1 < total:
        val = evaluate(state.params, "validation")
        writer.scalars(step + 1, {"validation/balanced_accuracy": val["balanced_accuracy"]})
      if is_save_step or preempted:
        ckpt.save(step + 1, state, {"step": step + 1, "method": cfg.method})
      if preempted:
        ckpt.wait()
        writer.close()
        raise checkpointing.Preempted(
            f"Preempted: saved step {step + 1} to {ckpt.directory}; run the same command to "
            "resume from it.")
  writer.close()
  return state


def _check_finite(scalars, step, ckpt):
  bad = sorted(k for k, v in scalars.items() if not np.isfinite(v))
  if bad:
    ckpt.wait()
    raise FloatingPointError(
        f"Non-finite loss terms {bad} at step {step} "
        f"({', '.join(f'{k}={scalars[k]}' for k in bad)}); nothing was saved from this step. "
        f"Last good checkpoint: step {ckpt.latest_step()} in {ckpt.directory}.")
