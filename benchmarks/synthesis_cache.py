r"""Offline synthesis on digits: a cache of N samples per labelled image against online TGT-random.

Command (repo root; 2 CPU cores, measured time in README "Offline synthesis"):
  python -m benchmarks.synthesis_cache        # → benchmarks/results/synthesis_cache/
  --smoke   1 seed, N ∈ {1, 4}, 6 steps (the test's setting)
Other flags: --seeds --samples --steps --teacher_dir --out.

Each seed s runs, with configs/digits.py (5 labels per class, cnn_small, the same
number of steps and batch size for every arm) and one shared teacher:
  synthesize      job=synthesize with N = max(--samples) samples per labelled example
                  (timed: the one-off cost)
  cached N        the student streaming the first N samples of each example of that cache
                  (tgt_cache.samples = N), for every N of --samples
  online          tgt_random exploring at every step (the reference)
  online_bf16     the same with the teacher computing in bfloat16 (teacher.dtype)
  kd              KD on the real images only (what exploration adds to)
and records balanced test accuracy and the job's wall time (teacher loading, compile,
the steps and evaluation). An online run of S steps at batch B draws S·B/L fresh x' per
labelled example (L = 50 labelled images): the number to hold N against. Runs are cached
in OUT/runs.jsonl, so a rerun resumes where it stopped.
"""

import argparse
import json
import os
import sys
import time

if __package__ in (None, ""):
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable=g-import-not-at-top,wrong-import-position
from benchmarks import seeds as seed_stats
from tgt_jax import configlib, jobs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "configs", "digits.py")


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
  p.add_argument("--seeds", type=int, default=5)
  p.add_argument("--samples", default="1,4,16,64", help="comma list of N")
  p.add_argument("--steps", type=int, default=0, help="0: the config's (2,000)")
  p.add_argument("--teacher_dir", default="", help="default: OUT/teacher (trained if missing)")
  p.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "synthesis_cache"))
  p.add_argument("--smoke", action="store_true")
  args = p.parse_args(argv)
  args.samples = sorted({int(n) for n in args.samples.split(",") if n})
  if args.smoke:
    args.seeds, args.samples, args.steps = 1, [1, 4], 6
  if not args.samples or min(args.samples) < 1 or args.seeds < 1:
    p.error("--samples must list N >= 1 and --seeds must be >= 1.")
  return args


def _config(args, seed, **overrides):
  arg = "runlocal" if args.smoke else None
  config = configlib.load(CONFIG, arg, **{
      "seed": seed, "teacher.dir": args.teacher_dir or os.path.join(args.out, "teacher"),
      **({"num_train_steps": args.steps} if args.steps else {}), **overrides})
  return config


def _done(path):
  rows = {}
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      for line in f:
        row = json.loads(line)
        rows[(row["arm"], row["seed"])] = row
  return rows


def run_arms(args):
  os.makedirs(args.out, exist_ok=True)
  log = os.path.join(args.out, "runs.jsonl")
  done = _done(log)
  rows = []

  def record(arm, seed, fn):
    if (arm, seed) not in done:
      start = time.time()
      results = fn()
      row = {"arm": arm, "seed": seed, "wall_s": time.time() - start,
             "test_accuracy": results.get("test_accuracy"),
             "num_train_steps": results.get("num_train_steps"),
             "batch_size": results.get("batch_size"),
             "num_labelled": (results.get("data") or {}).get("num_labelled")}
      with open(log, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
      done[(arm, seed)] = row
      print(f"{arm:<12} seed {seed}: test {row['test_accuracy']}  {row['wall_s']:.0f} s",
            flush=True)
    rows.append(done[(arm, seed)])

  largest = max(args.samples)
  for seed in range(args.seeds):
    work = os.path.join(args.out, "runs", f"seed{seed}")
    cache = os.path.join(work, "synthetic")
    record("synthesize", seed, lambda: jobs.run(_config(
        args, seed, job="synthesize", **{"tgt_cache.samples_per_example": largest,
                                         "tgt_cache.dir": cache}), os.path.join(work, "synth")))
    for n in args.samples:
      record(f"cached_{n}", seed, lambda n=n: jobs.run(_config(
          args, seed, **{"tgt_cache.dir": cache, "tgt_cache.samples": n}),
          os.path.join(work, f"cached_{n}")))
    record("online", seed, lambda: jobs.run(_config(args, seed), os.path.join(work, "online")))
    record("online_bf16", seed, lambda: jobs.run(
        _config(args, seed, **{"teacher.dtype": "bfloat16"}), os.path.join(work, "online_bf16")))
    record("kd", seed, lambda: jobs.run(_config(args, seed, method="kd"),
                                        os.path.join(work, "kd")))
  return rows


def summarize(rows, args):
  out = []
  for (arm,), group in seed_stats.group_by(rows, "arm").items():
    acc = [r["test_accuracy"] for r in group if r["test_accuracy"] is not None]
    mean, std = seed_stats.mean_std(acc) if acc else (float("nan"), 0.0)
    wall, _ = seed_stats.mean_std([r["wall_s"] for r in group])
    first = group[0]
    draws = (first["num_train_steps"] * first["batch_size"] / first["num_labelled"]
             if first.get("num_labelled") else None)
    out.append({"arm": arm, "seeds": len(group), "test_accuracy_mean": mean,
                "test_accuracy_std": std, "wall_s_mean": wall,
                "online_draws_per_example": draws})
  return out


def table(summary):
  lines = ["| arm | seeds | test accuracy (%) | wall s (mean) |", "|---|---|---|---|"]
  for s in summary:
    acc = ("—" if s["arm"] == "synthesize" else
           f"{100 * s['test_accuracy_mean']:.1f} ± {100 * s['test_accuracy_std']:.1f}")
    lines.append(f"| {s['arm']} | {s['seeds']} | {acc} | {s['wall_s_mean']:.1f} |")
  return "\n".join(lines)


def main(argv=None):
  args = parse_args(argv)
  start = time.time()
  rows = run_arms(args)
  summary = summarize(rows, args)
  text = table(summary)
  print(text, flush=True)
  with open(os.path.join(args.out, "results.json"), "w", encoding="utf-8") as f:
    json.dump({"args": vars(args), "summary": summary, "rows": rows,
               "wall_s_this_call": time.time() - start}, f, indent=2)
  with open(os.path.join(args.out, "table.md"), "w", encoding="utf-8") as f:
    f.write(text + "\n")
  return summary


if __name__ == "__main__":
  main()
