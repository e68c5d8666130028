r"""Sample efficiency on the real Fashion-MNIST: TGT far from its labeler's ceiling.

Command (repo root; needs `apt-get install dataset-fashion-mnist`):
  python -m benchmarks.fashion_mnist --teacher_dir=WORKDIR/teacher   # → benchmarks/results/fashion_mnist/
  --smoke   1 seed, k10, 3 steps, ce and tgt_random, the cached arm with N = 2 (the test's setting)
Other flags: --seeds --steps --batch_size --teacher_dir --data_dir --methods --cells --out.
Without --teacher_dir the teacher is trained first by the real job
(`configs/fashion_mnist.py:job=teacher`, into OUT/teacher; ~25-40 min on 2 cores).

Every student run is configs/fashion_mnist.py with dotted overrides, trained by the real
jitted step of tgt_jax (`classification.make_train_step`, `classification.batch_at`) on
the same rows the TFDS job would use: the data are read once through the job's TFDS source
(`fashion_mnist_debian`, by index) into memory (the 54,000-image train pool, the 6,000
validation images held out of train, the 10,000 test images), the student's subset is
drawn by the same rule and seed, and compiled steps are reused across cells and seeds.
The cached arms are real jobs (`job=synthesize`, then students with tgt_cache.dir) on the
TFDS path itself. Scores: balanced accuracy on test (and on validation, which alone
chooses augmentation).

Cells: k5, k10, k50 labels per class; lt100 a long tail with imbalance 100 (500 images in
the head class down to 5 in the tail); k100, k500 and kall (the whole pool, 5,400 per
class) for ce and kd only: the effective-sample-size curve (how many real labels TGT's k
are worth). Arms: every method of tgt.METHODS on k5/k10/k50/lt100 (tgt_prior,
tgt_gradient and tgt_gradient_input on k10 and lt100 only, to fit 2 hours); tgt_random at twice
the steps at k10 (tgt_gradient at equal wall time); cached tgt_random (N = 16 and 64 of
one 64-sample cache per seed) at k10. Peers on the same subsets: scikit-learn's logistic
regression and SVC (RBF) on pixels, and the teacher's labeler itself (trained on the
whole pool: the ceiling of what it can teach). Augmentation: each arm is run at k10 on
seed 0 with every choice in AUGMENTATIONS; the best validation accuracy wins
(ties → none). Runs are cached in OUT/runs.jsonl, so a rerun resumes where it stopped.
"""

import argparse
import dataclasses
import os
import sys
import time

if __package__ in (None, ""):
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable=g-import-not-at-top,wrong-import-position
import jax
import numpy as np

from benchmarks import fm_report
from benchmarks.sample_efficiency import Arm, RunLog, Runner, run_header
from tgt_jax import configlib, jobs, sharding, tgt
from tgt_jax.data import sources, subsets
from tgt_jax.data.memory import Dataset, Split
from tgt_jax.evaluation import classification as evaluation
from tgt_jax.teachers import generative

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "configs", "fashion_mnist.py")
POOL_PER_CLASS = 5400
CELLS = {
    "k5": {"data.labels_per_class": 5}, "k10": {"data.labels_per_class": 10},
    "k50": {"data.labels_per_class": 50},
    "lt100": {"data.labels_per_class": 0, "data.imbalance": 100.0, "data.head_count": 500},
    "k100": {"data.labels_per_class": 100}, "k500": {"data.labels_per_class": 500},
    "kall": {"data.labels_per_class": 0},
}
MAIN_CELLS = ("k5", "k10", "k50", "lt100")
SAMPLE_SIZE_CELLS = ("k10", "k50", "k100", "k500", "kall")
LABELS_PER_CLASS = {"k5": 5, "k10": 10, "k50": 50, "k100": 100, "k500": 500,
                    "kall": POOL_PER_CLASS}
AUGMENTATIONS = ("none", "flip_shift")
SELECTION_CELL, SELECTION_SEEDS = "k10", (0,)
CACHE_CELL, CACHE_SAMPLES = "k10", (16, 64)


# Cut to fit the 2-hour budget on 2 cores: these run at the headline and long-tail cells only.
HEADLINE_ONLY = ("tgt_prior", "tgt_gradient", "tgt_gradient_input")


def default_arms():
  def cells(m):
    if m in HEADLINE_ONLY:
      return ("k10", "lt100")
    return MAIN_CELLS + (("k100", "k500", "kall") if m in ("ce", "kd") else ())
  arms = [Arm(m, m, cells=cells(m)) for m in tgt.METHODS]
  arms.append(Arm("tgt_random_2x_steps", "tgt_random", cells=("k10",), steps_factor=2.0))
  return arms


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
  p.add_argument("--out", default="", help="default benchmarks/results/fashion_mnist[_smoke]")
  p.add_argument("--seeds", type=int, default=3)
  p.add_argument("--steps", type=int, default=400, help="student steps, every method")
  p.add_argument("--batch_size", type=int, default=64)
  p.add_argument("--teacher_dir", default="", help="default: OUT/teacher (trained if missing)")
  p.add_argument("--data_dir", default="", help="TFDS data_dir ('' = TFDS's default)")
  p.add_argument("--methods", default="", help="comma list of arm names (default: all)")
  p.add_argument("--cells", default=",".join(CELLS))
  p.add_argument("--no_cache_arms", action="store_true", help="skip the job-based cached arms")
  p.add_argument("--smoke", action="store_true")
  args = p.parse_args(argv)
  args.cache_samples = CACHE_SAMPLES
  if args.smoke:
    args.seeds, args.steps, args.cells = 1, 3, "k10"
    args.methods, args.cache_samples = args.methods or "ce,tgt_random", (2,)
  if not args.out:
    args.out = os.path.join(REPO, "benchmarks", "results",
                            "fashion_mnist" + ("_smoke" if args.smoke else ""))
  args.cells = tuple(c for c in args.cells.split(",") if c)
  bad = [c for c in args.cells if c not in CELLS]
  if bad:
    p.error(f"--cells: unknown {bad}; choose from {list(CELLS)}.")
  arms = default_arms()
  if args.methods:
    wanted, known = args.methods.split(","), sorted(a.name for a in arms)
    if any(w not in known for w in wanted):
      p.error(f"--methods: unknown {[w for w in wanted if w not in known]}; known: {known}.")
    arms = [a for a in arms if a.name in wanted]
  args.arms = [dataclasses.replace(a, cells=tuple(c for c in a.cells if c in args.cells))
               for a in arms]
  args.seed_list = tuple(range(args.seeds))
  return args


def fashion_config(arg=None, **overrides):
  """configs/fashion_mnist.py with dotted overrides (the benchmark runs exactly that config)."""
  return configlib.load(CONFIG, arg, **overrides)


def in_memory(config):
  """The job's TFDS source read once into memory: train (the pool), validation and test."""
  source = sources.make_source(config, with_subset=False)
  parts = {"train": source.pool, **source.eval_parts}
  splits = {}
  for name, part in parts.items():
    chunks = [part.take(np.arange(i, min(i + 4096, len(part))))
              for i in range(0, len(part), 4096)]
    splits[name] = Split(np.concatenate([c.images for c in chunks]),
                         np.concatenate([c.labels for c in chunks]),
                         np.concatenate([c.indices for c in chunks]))
  return Dataset(splits, source.num_classes, source.image_shape, source.pixel_range,
                 class_names=source.class_names)


def teacher_dir_of(args):
  """The shared teacher, trained by the real job into OUT/teacher when none is given."""
  directory = args.teacher_dir or os.path.join(args.out, "teacher")
  if not generative.exists(directory):
    print(f"Training the teacher into {directory} (configs/fashion_mnist.py:job=teacher) ...",
          flush=True)
    jobs.run(fashion_config("runlocal,job=teacher" if args.smoke else "job=teacher",
                            **{"teacher.dir": directory, "data.data_dir": args.data_dir}),
             os.path.join(args.out, "jobs", "teacher"))
  return directory


def pixel_peers(runner, cell, seed):
  """Logistic regression and SVC on the subset's raw pixels: {name: row fields}."""
  from sklearn.linear_model import LogisticRegression  # pylint: disable=g-import-not-at-top
  from sklearn.svm import SVC  # pylint: disable=g-import-not-at-top
  labelled, counts = runner.subset(cell, seed)
  flat = lambda split: split.images.reshape(len(split), -1)
  out = {}
  for name, model in (("logistic_regression", LogisticRegression(max_iter=1000)),
                      ("svc", SVC())):
    start = time.time()
    model.fit(flat(labelled), labelled.labels)
    out[name] = {split: evaluation.report(
        model.predict(flat(runner.dataset.splits[split])), runner.dataset.splits[split].labels,
        runner.dataset.num_classes, subsets.class_groups(counts))
                 for split in ("test", "validation")}
    out[name]["seconds"] = time.time() - start
  return out


def cached_rows(args, seed, augment, teacher_dir, log):
  """job=synthesize (N = max samples) at CACHE_CELL, then a cached student per N: real jobs."""
  work = os.path.join(args.out, "runs", f"cache_seed{seed}")
  cache = os.path.join(work, "synthetic")
  common = {"seed": seed, "teacher.dir": teacher_dir, "data.data_dir": args.data_dir,
            "num_train_steps": args.steps, "batch_size": args.batch_size,
            "data.augment": augment, **CELLS[CACHE_CELL]}
  arg = "runlocal" if args.smoke else None     # the smoke's teacher has runlocal settings
  rows = []
  if log.get("synthesize", "none", CACHE_CELL, seed) is None:
    start = time.time()
    jobs.run(fashion_config(f"{arg},job=synthesize" if arg else "job=synthesize", **common, **{
        "tgt_cache.dir": cache, "tgt_cache.samples_per_example": max(args.cache_samples)}),
             os.path.join(work, "synthesize"))
    log.add({"arm": "synthesize", "augment": "none", "cell": CACHE_CELL, "seed": seed,
             "seconds": time.time() - start})
  rows.append(log.get("synthesize", "none", CACHE_CELL, seed))
  for n in args.cache_samples:
    arm = f"tgt_random_cached_{n}"
    if log.get(arm, augment, CACHE_CELL, seed) is None:
      start = time.time()
      results = jobs.run(fashion_config(arg, **common, **{"tgt_cache.dir": cache,
                                                     "tgt_cache.samples": n}),
                         os.path.join(work, f"cached_{n}"))
      log.add({"arm": arm, "augment": augment, "cell": CACHE_CELL, "seed": seed,
               "test": results["test"], "validation": results["validation"],
               "seconds": time.time() - start})
      print(f"{arm:40s} {CACHE_CELL:5s} seed {seed} test "
            f"{100 * results['test']['balanced_accuracy']:.1f}", flush=True)
    rows.append(log.get(arm, augment, CACHE_CELL, seed))
  return rows


def run_benchmark(args):
  """Every arm × cell × seed, the peers and the cached arms (resuming from OUT/runs.jsonl)."""
  os.makedirs(args.out, exist_ok=True)
  mesh = sharding.make_mesh(jax.devices()[:1])     # one device: learning, not scaling
  start = time.time()
  dataset = in_memory(fashion_config(**{"data.data_dir": args.data_dir}))
  print(f"Read Fashion-MNIST into memory in {time.time() - start:.1f} s: "
        f"{ {k: len(v) for k, v in dataset.splits.items()} }", flush=True)
  # ce alone needs no teacher (it can run while the teacher trains: --methods=ce --no_cache_arms).
  needs_teacher = not args.no_cache_arms or any(a.method != "ce" for a in args.arms)
  teacher_dir = teacher_dir_of(args) if needs_teacher else args.teacher_dir
  meta, params = (generative.load(teacher_dir, dataset.image_shape, dataset.num_classes,
                                  mesh=mesh) if needs_teacher else (None, None))
  runner = Runner(dataset, mesh, args.steps, args.batch_size, meta,
                  config_fn=lambda **o: fashion_config(**{"data.data_dir": args.data_dir, **o}),
                  cells=CELLS)
  log = RunLog(os.path.join(args.out, "runs.jsonl"),
               {"steps": args.steps, "batch_size": args.batch_size, "teacher": teacher_dir})

  def run(arm, augment, cell, seed):
    row = log.get(arm.key, augment, cell, seed)
    if row is None:
      row = log.add({"arm": arm.key, "augment": augment, "cell": cell, "seed": seed,
                     **runner.student(arm, augment, cell, seed, params)})
      print(f"{arm.key:40s} {cell:5s} seed {seed} aug {augment:10s} "
            f"test {100 * row['test']['balanced_accuracy']:.1f} "
            f"val {100 * row['validation']['balanced_accuracy']:.1f} "
            f"({row['seconds']:.0f} s)", flush=True)
    return row

  chosen = {}
  for arm in args.arms:
    twin = next((a for a in args.arms if a.method == arm.method and a.steps_factor == 1.0
                 and a.key in chosen), None)
    if twin is not None or SELECTION_CELL not in args.cells:
      chosen[arm.key] = chosen[twin.key] if twin else AUGMENTATIONS[0]
      continue
    val = {aug: np.mean([run(arm, aug, SELECTION_CELL, s)["validation"]["balanced_accuracy"]
                         for s in args.seed_list[:len(SELECTION_SEEDS)]])
           for aug in AUGMENTATIONS}
    chosen[arm.key] = max(AUGMENTATIONS, key=lambda a: (val[a], a == "none"))

  rows = [run(arm, chosen[arm.key], cell, seed)
          for arm in args.arms for cell in arm.cells for seed in args.seed_list]
  for cell in (c for c in MAIN_CELLS if c in args.cells):
    for seed in args.seed_list:
      if log.get("svc", "none", cell, seed) is None:
        for name, fields in pixel_peers(runner, cell, seed).items():
          log.add({"arm": name, "augment": "none", "cell": cell, "seed": seed, **fields})
      rows += [log.get(name, "none", cell, seed) for name in ("logistic_regression", "svc")]
  if needs_teacher and log.get("labeler", "none", "pool", 0) is None:
    counts = np.full(dataset.num_classes, POOL_PER_CLASS)
    log.add({"arm": "labeler", "augment": "none", "cell": "pool", "seed": 0, "seconds": 0.0,
             **runner.labeler_scores(meta, params, counts)})
  rows += [log.get("labeler", "none", "pool", 0)] if needs_teacher else []
  online = "pretrained/cnn_small/tgt_random"
  if not args.no_cache_arms and CACHE_CELL in args.cells and online in chosen:
    for seed in args.seed_list:
      rows += cached_rows(args, seed, chosen[online], teacher_dir, log)
  selection = [r for r in log.rows.values() if r["cell"] == SELECTION_CELL
               and r["seed"] in SELECTION_SEEDS and r["arm"].startswith("pretrained/")]
  return rows, chosen, selection, (log.trained_now, len(log.rows) - log.trained_now)


def main(argv=None):
  args = parse_args(argv)
  start = time.time()
  rows, chosen, selection, counts = run_benchmark(args)
  header = run_header("fashion_mnist", argv, args, start, rows, counts)
  print(fm_report.write_all(args.out, header, rows, chosen, selection), flush=True)
  return rows


if __name__ == "__main__":
  main()
