r"""Sample efficiency on the real digits data: who learns most from few labels.

Command (repo root; 46.1 min on 2 CPU cores with the defaults, measured):
  python -m benchmarks.sample_efficiency          # → benchmarks/results/sample_efficiency/
  --quick   2 seeds, cells k5 and lt50, 400 steps, cnn_small only (→ ..._quick/; 4.6 min
            with --teacher_dir=benchmarks/results/sample_efficiency/teacher, ~2 min more
            to train a teacher)
  --smoke   1 seed, k5, 3 steps, two methods (the test's setting; seconds)
  --sweep   tgt_gradient's k / η / σ / ε sweep against tgt_random at equal steps and at
            equal wall time, k5, 3 seeds (→ benchmarks/results/gradient_sweep/, 12.6 min)
Other flags: --seeds --steps --batch_size --teacher_dir --methods --students --cells.

Every student run is the real jitted step of tgt_jax (`classification.make_train_step`,
`classification.batch_at`) on the student's subset of the train split, with the same
student architecture, number of steps and batch size for every method; it is scored
on the balanced test split (and on validation, which alone chooses augmentation).

Arms (method × teacher protocol × student):
- pretrained teacher (the paper's setting): one teacher (VAE + labeler) trained by
  tgt_jax on the whole labelled train split; the student sees only its subset's labels.
  cnn_small runs ce, kd, kd_mixup and the four TGT variants at every cell; mlp runs the
  main ones at k5 and lt50.
- same-labels teacher (at k5): the same VAE (trained on all train images, which never uses a
  label) with a labeler trained on the student's own k labels per class only (same
  architecture as the pretrained labeler, 1,000 steps). It isolates what the generator's
  exploration adds beyond a better-informed labeler.
- tgt_random_no_labels: the synthetic term alone (ce_weight = α = 0): what the teacher
  gives without any label. kd_transfer: KD on all real train images, unlabelled (the
  classic large transfer set; the ceiling); both at k5 and lt50. svc: scikit-learn's SVC (RBF, defaults) on
  the same subsets, the reference peer.
Cells: k5, k10, k25 labels per class; lt50 a long tail with imbalance 50 (head class =
the smallest class's size); the seed varies the subset and the initialisation.
Augmentation: each (student, method) is run at k5 on seeds 0 and 1 with every choice in
AUGMENTATIONS; the one with the best mean validation accuracy is used for all its runs
(the same-labels arms use their pretrained twin's choice). Runs are cached in
OUT/runs.jsonl, so a rerun with the same settings resumes where it stopped.
"""

import argparse
import dataclasses
import json
import os
import sys
import time

if __package__ in (None, ""):     # python benchmarks/sample_efficiency.py
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable=g-import-not-at-top,wrong-import-position
import jax
import numpy as np

from benchmarks import se_report
from tgt_jax import configlib, sharding, tgt
from tgt_jax.teachers import generative
from tgt_jax.data import datasets
from tgt_jax.evaluation import classification as evaluation
from tgt_jax.tasks import classification, method
from tgt_jax.teachers import training
from tgt_jax.data import sources, subsets

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CELLS = {"k5": (5, 0.0), "k10": (10, 0.0), "k25": (25, 0.0), "lt50": (0, 50.0)}
AUGMENTATIONS = ("none", "shift")
SELECTION_CELL, SELECTION_SEEDS = "k5", (0, 1)
SAME_LABELS_LABELER_STEPS = 1000


@dataclasses.dataclass(frozen=True)
class Arm:
  """One row of a table: a method (with its overrides) for one teacher protocol and student."""
  name: str
  method: str
  protocol: str = "pretrained"          # pretrained | same_labels | none (svc)
  student: str = "cnn_small"
  cells: tuple = tuple(CELLS)
  tgt: tuple = ()                        # (key, value) overrides of config.tgt
  steps_factor: float = 1.0              # × --steps (equal-wall-time comparisons)

  @property
  def key(self):
    return f"{self.protocol}/{self.student}/{self.name}"


def default_arms(students=("cnn_small", "mlp")):
  """The default grid; the cells of the secondary arms are cut to fit 60 min on 2 cores."""
  arms = []
  if "cnn_small" in students:
    arms += [Arm(m, m) for m in tgt.METHODS if m != "kd_transfer"]
    arms.append(Arm("kd_transfer", "kd_transfer", cells=("k5", "lt50")))
    arms.append(Arm("tgt_random_no_labels", "tgt_random", cells=("k5", "lt50"),
                    tgt=(("ce_weight", 0.0), ("alpha", 0.0))))
    arms += [Arm(m, m, protocol="same_labels", cells=("k5",))
             for m in ("kd", "tgt_random", "tgt_gradient")]
  if "mlp" in students:
    arms += [Arm(m, m, student="mlp", cells=("k5", "lt50"))
             for m in ("ce", "kd", "kd_mixup", "tgt_random", "tgt_gradient")]
  return arms


def sweep_arms():
  """tgt_gradient's knobs (k, η, start noise σ, ε-ball) against tgt_random, at k5.

  tgt_random_2x runs twice the steps: about tgt_gradient's (k = 1) wall time.
  """
  g = "tgt_gradient"
  return [Arm("tgt_random", "tgt_random"), Arm("tgt_random_2x", "tgt_random", steps_factor=2.0),
          Arm("tgt_gradient", g),
          Arm("tgt_gradient_k3_eta0.5", g, tgt=(("steps", 3), ("eta", 0.5))),
          Arm("tgt_gradient_k5_eta0.3", g, tgt=(("steps", 5), ("eta", 0.3))),
          Arm("tgt_gradient_eta2", g, tgt=(("eta", 2.0),)),
          Arm("tgt_gradient_sigma0.5", g, tgt=(("sigma", 0.5),)),
          Arm("tgt_gradient_sigma0_k3", g, tgt=(("sigma", 0.0), ("steps", 3))),
          Arm("tgt_gradient_k3_eps1", g, tgt=(("steps", 3), ("epsilon", 1.0)))]


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
  p.add_argument("--out", default="",
                 help="default benchmarks/results/sample_efficiency[_quick|_smoke] or "
                      "gradient_sweep")
  p.add_argument("--seeds", type=int, default=5)
  p.add_argument("--steps", type=int, default=1000, help="student steps, every method")
  p.add_argument("--batch_size", type=int, default=64)
  p.add_argument("--teacher_dir", default="", help="default: OUT/teacher (trained if missing)")
  p.add_argument("--students", default="cnn_small,mlp")
  p.add_argument("--methods", default="", help="comma list of arm names (default: all)")
  p.add_argument("--cells", default=",".join(CELLS))
  p.add_argument("--quick", action="store_true")
  p.add_argument("--smoke", action="store_true")
  p.add_argument("--sweep", action="store_true",
                 help="tgt_gradient's sweep at k5 (3 seeds, no augmentation) instead of the grid")
  args = p.parse_args(argv)
  if args.sweep:
    args.seeds, args.students, args.cells = min(args.seeds, 3), "cnn_small", "k5"
  if args.quick:
    args.seeds, args.steps, args.students, args.cells = 2, 400, "cnn_small", "k5,lt50"
  if args.smoke:
    args.seeds, args.steps, args.students, args.cells = 1, 3, "cnn_small", "k5"
    args.methods = args.methods or "ce,tgt_random"
  if not args.out:     # never let a quick, smoke or sweep run overwrite the full results
    name = ("gradient_sweep" if args.sweep else "sample_efficiency" +
            next((f"_{m}" for m in ("smoke", "quick") if getattr(args, m)), ""))
    args.out = os.path.join(REPO, "benchmarks", "results", name)
  args.students = tuple(s for s in args.students.split(",") if s)
  args.cells = tuple(c for c in args.cells.split(",") if c)
  bad = [c for c in args.cells if c not in CELLS]
  if bad:
    p.error(f"--cells: unknown {bad}; choose from {list(CELLS)}.")
  arms = sweep_arms() if args.sweep else default_arms(args.students)
  if args.methods:
    wanted = args.methods.split(",")
    known = sorted({a.name for a in arms})
    if any(w not in known for w in wanted):
      p.error(f"--methods: unknown {[w for w in wanted if w not in known]}; known: {known}.")
    arms = [a for a in arms if a.name in wanted]
  args.arms = [dataclasses.replace(a, cells=tuple(c for c in a.cells if c in args.cells))
               for a in arms]
  args.seed_list = tuple(range(args.seeds))
  return args


def digits_config(**overrides):
  """configs/digits.py with dotted overrides (the benchmark runs exactly that config)."""
  return configlib.load(os.path.join(REPO, "configs", "digits.py"), None, **overrides)


class Runner:
  """Trains and scores students, reusing each compiled step across cells and seeds."""

  def __init__(self, dataset, mesh, steps, batch_size, teacher_meta, config_fn=None,
               cells=None):
    self.dataset, self.mesh, self.steps, self.batch_size = dataset, mesh, steps, batch_size
    self.config_fn = config_fn or digits_config     # dotted overrides → the run's config
    self.cells = cells or {c: {"data.labels_per_class": k, "data.imbalance": rho}
                           for c, (k, rho) in CELLS.items()}
    self.teacher_fns = generative.as_functions(teacher_meta) if teacher_meta else None
    self.fill = float(dataset.pixel_range[0])
    self._steps, self._predict = {}, {}

  def config(self, arm, augment, cell, seed):
    overrides = {"method": arm.method, "seed": seed, "student.model": arm.student,
                 **self.cells[cell], "data.augment": augment,
                 "num_train_steps": int(round(self.steps * arm.steps_factor)),
                 "batch_size": self.batch_size}
    overrides.update({f"tgt.{key}": value for key, value in arm.tgt})
    return self.config_fn(**overrides)

  def subset(self, cell, seed):
    config = self.config(Arm("ce", "ce"), "none", cell, seed)
    return sources.student_subset(config, self.dataset.splits["train"], self.dataset.num_classes)

  def student(self, arm, augment, cell, seed, teacher_params):
    """Trains one student; returns its scores (test and validation reports)."""
    start = time.time()
    config = self.config(arm, augment, cell, seed)
    cfg = method.tgt_config(config)
    labelled, counts = self.subset(cell, seed)
    module, tx, state, step_key = classification.init_student(config, self.dataset, self.mesh)
    cache_key = (arm.student, cfg, augment, config.num_train_steps)
    if cache_key not in self._steps:
      self._steps[cache_key] = classification.make_train_step(
          module.apply, tx, cfg, self.teacher_fns if cfg.alpha_eff or cfg.lam_eff else None,
          self.mesh, augment, self.fill)
      self._predict.setdefault(arm.student, evaluation.make_predict(module.apply, self.mesh))
    step = self._steps[cache_key]
    tparams = teacher_params if (cfg.alpha_eff or cfg.lam_eff) else None
    unlabelled = self.dataset.splits["train"]
    for i in range(config.num_train_steps):
      batch = sharding.to_global(self.mesh, classification.batch_at(
          config, cfg, labelled, unlabelled, i))
      state, terms = step(state, tparams, batch, step_key)
    total = float(jax.device_get(terms["total"]))
    if not np.isfinite(total):
      raise FloatingPointError(f"{arm.key} {cell} seed {seed}: final loss {total}.")
    groups = subsets.class_groups(counts)
    scores = {name: self.score(arm.student, state.params, name, groups)
              for name in ("test", "validation")}
    return {**scores, "seconds": time.time() - start}

  def score(self, student, params, split_name, groups):
    split = self.dataset.splits[split_name]
    preds = evaluation.predict(self._predict[student], params, split, 128, self.mesh)
    return evaluation.report(preds, split.labels, self.dataset.num_classes, groups)

  def labeler_scores(self, meta, teacher_params, counts):
    """The teacher's labeler as a classifier, on test and validation (its own quality)."""
    _, labeler = generative.build_modules(meta)
    predict = evaluation.make_predict(lambda p, x: labeler.apply(p["labeler"], x), self.mesh)
    groups = subsets.class_groups(counts)
    out = {}
    for name in ("test", "validation"):
      split = self.dataset.splits[name]
      preds = evaluation.predict(predict, teacher_params, split, 128, self.mesh)
      out[name] = evaluation.report(preds, split.labels, self.dataset.num_classes, groups)
    return out

  def svc(self, cell, seed):
    from sklearn.svm import SVC   # pylint: disable=g-import-not-at-top
    start = time.time()
    labelled, counts = self.subset(cell, seed)
    model = SVC().fit(labelled.images.reshape(len(labelled), -1), labelled.labels)
    groups = subsets.class_groups(counts)
    out = {}
    for name in ("test", "validation"):
      split = self.dataset.splits[name]
      preds = model.predict(split.images.reshape(len(split), -1))
      out[name] = evaluation.report(preds, split.labels, self.dataset.num_classes, groups)
    return {**out, "seconds": time.time() - start}


def pretrained_teacher(directory, dataset, mesh):
  """(meta, params) of the digits teacher in `directory`, trained there first if missing."""
  if not generative.exists(directory):
    print(f"Training the pretrained teacher into {directory} ...", flush=True)
    meta, params, report = training.train(configlib.digits_teacher(), dataset, mesh)
    meta["report"] = report
    generative.save(directory, meta, params)
  return generative.load(directory, dataset.image_shape, dataset.num_classes, mesh=mesh)


def same_labels_teacher(meta, params, labelled, mesh, seed):
  """The pretrained VAE with a labeler trained on `labelled` (the student's labels) only."""
  _, labeler = generative.build_modules(meta)
  init = generative.init_params(meta, jax.random.key(1000 + seed))["labeler"]
  t = configlib.digits_teacher()
  fitted = training.fit(training.labeler_loss(labeler), init, labelled,
                             steps=SAME_LABELS_LABELER_STEPS, batch_size=t.batch_size,
                             learning_rate=t.learning_rate, seed=seed, mesh=mesh,
                             name="same-labels labeler", log_every=10**9)
  return {**params, "labeler": fitted}


class RunLog:
  """OUT/runs.jsonl: one line per finished run, so an interrupted benchmark resumes."""

  def __init__(self, path, settings):
    self.path, self.settings, self.rows, self.trained_now = path, settings, {}, 0
    if os.path.exists(path):
      with open(path, encoding="utf-8") as f:
        for line in f:
          row = json.loads(line)
          if row.get("settings") == settings:
            self.rows[self.key(row)] = row

  @staticmethod
  def key(row):
    return (row["arm"], row["augment"], row["cell"], row["seed"])

  def get(self, *key):
    return self.rows.get(key)

  def add(self, row):
    row = {**row, "settings": self.settings}
    self.rows[self.key(row)] = row
    self.trained_now += 1
    with open(self.path, "a", encoding="utf-8") as f:
      f.write(json.dumps(row) + "\n")
    return row


def run_benchmark(args):
  """Runs every arm × cell × seed (resuming from OUT/runs.jsonl); returns the run rows."""
  os.makedirs(args.out, exist_ok=True)
  # One device: this measures learning, not scaling (and fake CPU devices only add overhead).
  mesh = sharding.make_mesh(jax.devices()[:1])
  dataset = datasets.load("digits")
  meta, params = pretrained_teacher(args.teacher_dir or os.path.join(args.out, "teacher"),
                                    dataset, mesh)
  runner = Runner(dataset, mesh, args.steps, args.batch_size, meta)
  settings = {"steps": args.steps, "batch_size": args.batch_size}
  log = RunLog(os.path.join(args.out, "runs.jsonl"), settings)
  same_labels = {}

  def same_labels_params(cell, seed):
    """The same-labels teacher of (cell, seed), trained once; its labeler's scores logged."""
    if (cell, seed) not in same_labels:
      labelled, counts = runner.subset(cell, seed)
      same_labels[(cell, seed)] = same_labels_teacher(meta, params, labelled, mesh, seed)
      if log.get("same_labels/labeler", "none", cell, seed) is None:
        log.add({"arm": "same_labels/labeler", "augment": "none", "cell": cell, "seed": seed,
                 "seconds": 0.0,
                 **runner.labeler_scores(meta, same_labels[(cell, seed)], counts)})
    return same_labels[(cell, seed)]

  def run(arm, augment, cell, seed):
    same = arm.protocol == "same_labels"
    if same and log.get("same_labels/labeler", "none", cell, seed) is None:
      same_labels_params(cell, seed)
    row = log.get(arm.key, augment, cell, seed)
    if row is None:
      tparams = same_labels_params(cell, seed) if same else params
      scores = runner.student(arm, augment, cell, seed, tparams)
      row = log.add({"arm": arm.key, "augment": augment, "cell": cell, "seed": seed, **scores})
      print(f"{arm.key:40s} {cell:5s} seed {seed} aug {augment:5s} "
            f"test {100 * row['test']['balanced_accuracy']:.1f} "
            f"val {100 * row['validation']['balanced_accuracy']:.1f} "
            f"({row['seconds']:.0f} s)", flush=True)
    return row

  chosen = {}
  for arm in args.arms:
    twin = dataclasses.replace(arm, protocol="pretrained").key
    if arm.protocol == "same_labels" and twin in chosen:
      chosen[arm.key] = chosen[twin]
      continue
    if args.sweep or SELECTION_CELL not in args.cells or len(AUGMENTATIONS) == 1:
      chosen[arm.key] = AUGMENTATIONS[0]
      continue
    val = {aug: np.mean([run(arm, aug, SELECTION_CELL, s)["validation"]["balanced_accuracy"]
                         for s in args.seed_list[:len(SELECTION_SEEDS)]])
           for aug in AUGMENTATIONS}
    chosen[arm.key] = max(AUGMENTATIONS, key=lambda a: (val[a], a == "none"))

  rows = []
  for arm in args.arms:
    for cell in arm.cells:
      for seed in args.seed_list:
        rows.append(run(arm, chosen[arm.key], cell, seed))
  for cell in args.cells:
    for seed in args.seed_list:
      if log.get("svc", "none", cell, seed) is None:
        log.add({"arm": "svc", "augment": "none", "cell": cell, "seed": seed,
                 **runner.svc(cell, seed)})
      rows.append(log.get("svc", "none", cell, seed))
  rows += [r for r in log.rows.values() if r["arm"] == "same_labels/labeler"]
  selection = [r for r in log.rows.values() if r["cell"] == SELECTION_CELL
               and r["arm"] not in ("svc", "same_labels/labeler")]
  return rows, chosen, selection, (log.trained_now, len(log.rows) - log.trained_now)


def run_header(name, argv, args, start, rows, counts):
  """What a benchmark's report says about its run: command, machine, protocol and times."""
  device = jax.devices()[0]
  trained_now, cached = counts
  return {"command": f"python -m benchmarks.{name} " + " ".join(argv or sys.argv[1:]),
          "device": f"{device.device_kind} ({device.platform}) x {jax.device_count()}",
          "cpu_count": os.cpu_count(), "jax": jax.__version__, "steps": args.steps,
          "batch_size": args.batch_size, "seeds": list(args.seed_list),
          "wall_time_sec": time.time() - start, "runs_trained_now": trained_now,
          "runs_from_cache": cached,
          "run_seconds_total": sum(r.get("seconds", 0.0) for r in rows)}


def main(argv=None):
  args = parse_args(argv)
  start = time.time()
  rows, chosen, selection, counts = run_benchmark(args)
  header = run_header("sample_efficiency", argv, args, start, rows, counts)
  summary = se_report.write_all(args.out, header, rows, chosen, selection)
  print(summary, flush=True)
  return rows


if __name__ == "__main__":
  main()
