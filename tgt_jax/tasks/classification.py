"""The TGT student for classification (digits, TFDS images, WordNet text).

The student step is one `jax.jit` over a data mesh: the batch is sharded, the
student state and the teacher parameters are replicated, and only the student
state is donated and optimised. Batches and random keys are functions of
(seed, step), so a resumed run sees exactly the data and noise it would have.
The task supplies the step, the batches, the evaluation and the samples; the
engine's loop does the rest.
"""

import functools
import itertools
import logging
import time

import jax
import jax.numpy as jnp
import numpy as np

from tgt_jax import metrics, models, sharding, tgt, workdir as workdir_lib
from tgt_jax.data import augment, sources, subsets, synthetic_cache
from tgt_jax.engine import artifacts, loop, state as state_lib
from tgt_jax.evaluation import classification as evaluation
from tgt_jax.tasks import cache, method, pretrained_student, probe
from tgt_jax.teachers import kinds

tgt_config = method.tgt_config     # where callers (benchmarks, tests) found it first


def validate(config):
  """Every student value, before any work (teacher training included)."""
  models.check_classifier(config.student.model, config.student.get("dtype") or None)
  method.tgt_config(config)   # validates method, σ, η, k, ε, m, τ
  state_lib.check_optimizer(config.optimizer)
  state_lib.check_loop_settings(config)
  sources.check_name(config.data.name)
  check_validation_split(config)
  if config.data.name in sources.IN_MEMORY:
    augment.check(config.data.augment)
  streamed = config.data.name not in sources.IN_MEMORY and config.data.get("reader") == "tf_data"
  if streamed and config.method == "kd_transfer":
    raise ValueError("method 'kd_transfer' reads unlabelled train images by index: it needs "
                     "in-memory data or data.reader='random_access' (ArrayRecord), not "
                     "data.reader='tf_data'.")
  if cache.settings(config)["dir"]:
    if config.method not in cache.CACHEABLE_METHODS:
      raise ValueError(f"tgt_cache.dir is set: a cache holds x' that does not depend on the "
                       f"student, so method must be one of {list(cache.CACHEABLE_METHODS)}, "
                       f"not {config.method!r}.")
    if streamed:
      raise ValueError("tgt_cache.dir is set: cached x' are found by their real example's "
                       "index, which needs in-memory data or data.reader='random_access' "
                       "(ArrayRecord), not data.reader='tf_data'.")
  kinds.validate(config)


def check_validation_split(config):
  """The loop evaluates the student on 'validation' every eval_every steps: a TFDS config must
  name that split in data.eval_splits or cut one from train (data.validation_size). Checked
  here because TFDS's mock data, which the tests run under, serves any split name."""
  if not config.get("eval_every") or config.data.name in sources.IN_MEMORY:
    return
  names = set((config.data.get("eval_splits") or {"test": "test"}).keys())
  if config.data.get("validation_size"):
    names.add("validation")
  if "validation" not in names:
    raise ValueError(f"eval_every={config.eval_every} evaluates the student on 'validation', "
                     f"which config.data.eval_splits {sorted(names)} does not name: add it as a "
                     "split the dataset has (e.g. 'train[90%:]' for one with only train and "
                     "test), or set eval_every=0.")


def reads_by_index(source):
  """In-memory data and ArrayRecord read by index give each labelled row a fixed index (what
  a cache is keyed by) and batches as a function of (seed, step); a tf.data stream does not."""
  return hasattr(source, "labelled_rows")


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


def batch_at(config, cfg, labelled, unlabelled, step):
  """Batch `step` of in-memory splits (for benchmarks and tests): what student_batches yields."""
  batch = sources.batch_of(labelled, config.batch_size, config.seed, step)
  if cfg.method == "kd_transfer":
    size = config.batch_size * cfg.num_samples
    batch["transfer"] = sources.inputs_of(unlabelled, size, config.seed, step)["image"]
  return batch


def cached_batches(source, cfg, config, reader, samples, start_step):
  """The labelled batches with x' and T(x') of their rows read from the cache: each row's m
  samples picked by (seed, step), so a resumed run reads what it would have read."""
  local = sharding.process_rows(config.batch_size)
  for step in itertools.count(start_step):
    rows = source.labelled_rows(step)[local]      # the rows labelled_batches would draw
    picks = synthetic_cache.sample_ids(config.seed, step, config.batch_size, cfg.num_samples,
                                       samples)[local]
    cached = synthetic_cache.synthetic_batch(reader, rows, picks)
    yield {**source.labelled_batch(rows), "synthetic_image": cached["synthetic_image"],
           "synthetic_teacher_logits": cached["synthetic_teacher_logits"]}


def student_batches(source, cfg, batch_size, start_step):
  """The labelled batches; kd_transfer adds m unlabelled train inputs per real one."""
  labelled = source.labelled_batches(start_step)
  if cfg.method != "kd_transfer":
    yield from labelled
    return
  transfer = source.unlabelled_batches(batch_size * cfg.num_samples, start_step)
  for batch, extra in zip(labelled, transfer):
    yield {**batch, "transfer": extra["image"]}


def build_student(config, source):
  return models.classifier(config.student.model, source.num_classes,
                           config.student.get("dtype") or None,
                           vocab_size=len(source.vocabulary) if source.vocabulary else None)


def init_student(config, source, mesh):
  """(module, optimizer, replicated step-0 state, key of the per-step noise) from the seed.

  With config.student.init_from, every parameter but the classification head
  starts from that pretrained student (tasks/pretrained_student.py).
  """
  student = build_student(config, source)
  tx = state_lib.make_optimizer(config.optimizer, config.num_train_steps)
  init_key, step_key = jax.random.split(jax.random.key(config.seed))
  # One compiled call: op by op, a ResNet's initializers compile ~300 times (bit-identical).
  params = jax.jit(student.init)(init_key, jnp.zeros((1, *source.image_shape),
                                                     source.input_dtype))
  if config.student.get("init_from"):
    params = pretrained_student.load_into(params, config.student.init_from,
                                          config.student.model, source.vocabulary)
  state = sharding.replicate(mesh, state_lib.TrainState(jnp.asarray(0, jnp.int32), params,
                                                        tx.init(params)))
  return student, tx, state, step_key


def run(config, workdir):
  """The student job: train (resuming), evaluate every eval split, write results.json."""
  start_time = time.time()
  cfg = method.tgt_config(config)
  mesh = sharding.mesh_for(batch_size=config.batch_size, eval_batch_size=config.eval_batch_size)
  source = sources.make_source(config)
  counts = source.counts
  config = state_lib.resolve_durations(config, int(np.sum(counts)))
  if not config.eval_only:
    loop.refuse_shorter_run(workdir, config.num_train_steps)
  subset = subsets.describe(config.data.labels_per_class, config.data.imbalance,
                            config.data.get("num_labels", 0))
  logging.info("Student subset: %s, %d examples, per class %s", subset, int(np.sum(counts)),
               counts.tolist())

  cache_dir = cache.settings(config)["dir"]
  if (cache_dir or cfg.method == "kd_transfer") and not reads_by_index(source):
    raise ValueError(f"{'tgt_cache.dir' if cache_dir else 'kd_transfer'} needs data read by "
                     f"index, and {config.data.name!r} is read as a tf.data stream: prepare it "
                     "as ArrayRecord (file_format='array_record') or use in-memory data.")
  teacher = kinds.teacher_for(config, cfg, workdir, source, mesh,
                              parts=("labeler",) if cache_dir else None)
  reader = samples = None
  identity = dict(teacher.identity)
  if cache_dir and not config.eval_only:
    reader = cache.open_reader(cache_dir)
    samples = cache.check(reader.manifest, config, cfg, teacher.identity, int(np.sum(counts)),
                          cache_dir)
    identity["synthetic_cache"] = cache.fingerprint(reader.manifest)
  if identity:    # a resume must distil from the same teacher (and cache)
    workdir_lib.record_or_check(workdir, identity, "student run's teacher",
                                file=workdir_lib.TEACHER_IDENTITY_FILE)
  student, tx, state, step_key = init_student(config, source, mesh)
  predict = evaluation.make_predict(student.apply, mesh)
  groups = subsets.class_groups(counts)

  def evaluate(params, split_name):
    return evaluation.evaluate(predict, params,
                               source.eval_batches(split_name, config.eval_batch_size),
                               source.num_classes, groups, mesh)

  writer = metrics.MetricWriter(workdir)
  ckpt = loop.checkpoints_of(workdir, config.keep_checkpoints, read_only=config.eval_only)
  try:
    state = loop.restore_or_start(ckpt, state, config.eval_only, config.eval_step)
    if not config.eval_only:
      batches = (functools.partial(cached_batches, source, cfg, config, reader, samples)
                 if reader is not None else
                 functools.partial(student_batches, source, cfg, config.batch_size))
      state = _train(config, cfg, mesh, student, tx, state, teacher, source, ckpt, writer,
                     evaluate, step_key, batches, explores=reader is None)
  finally:
    ckpt.close()
    if reader is not None:
      reader.close()
  total = int(state.step)

  reports = {name: evaluate(state.params, name) for name in source.eval_split_names}
  test = reports.get("test", reports[source.eval_split_names[0]])
  writer.scalars(total, {f"{name}/balanced_accuracy": r["balanced_accuracy"]
                         for name, r in reports.items()})
  writer.close()
  results = {
      "job": "student", "eval_only": bool(config.eval_only), "checkpoint_step": total,
      "method": cfg.method, "seed": config.seed, "student_model": config.student.model,
      "data": {"name": config.data.name,
               "subset": subset, "labels_per_class": config.data.labels_per_class,
               "imbalance": config.data.imbalance, "class_counts": counts.tolist(),
               "num_labelled": int(np.sum(counts)), "class_groups": groups},
      **reports, "test": test, "test_accuracy": test["balanced_accuracy"],
      "num_train_steps": config.num_train_steps, "batch_size": config.batch_size,
      "tgt": config.tgt.to_dict(),
      "teacher_dir": teacher.directory,
      "teacher_report": (teacher.meta or {}).get("report"),
      "num_devices": int(mesh.devices.size), "num_processes": jax.process_count(),
      "wall_time_sec": time.time() - start_time,
  }
  return artifacts.write_results(workdir, results)


def _train(config, cfg, mesh, student, tx, state, teacher, source, ckpt, writer, evaluate,
           step_key, batches, explores=True):
  fill = float(source.pixel_range[0])        # the background of digits: black
  step = make_train_step(student.apply, tx, cfg, teacher.functions, mesh, source.step_augment,
                         fill)
  explore = (probe.make_probe(student.apply, cfg, teacher.functions, mesh, config.grid_examples,
                              source.step_augment, fill)
             if cfg.uses_synthetic and explores else None)     # a cached run has no G to probe

  def probe_fn(state, batch, step_number):
    """Exploration diagnostics and the samples grid (methods with synthetic inputs only)."""
    stats, samples = jax.device_get(explore(state, teacher.params, batch, step_key))
    probe.write_samples(writer, step_number, samples, source, cfg.num_samples)
    return stats

  return loop.train(
      state, lambda s, b: step(s, teacher.params, b, step_key), batches, ckpt, writer,
      loop.Schedule.of(config), mesh, probe=probe_fn if explore is not None else None,
      evaluate=lambda p: {"validation/balanced_accuracy":
                          evaluate(p, "validation")["balanced_accuracy"]},
      meta={"method": cfg.method})
