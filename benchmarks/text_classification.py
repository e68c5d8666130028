r"""Text: TGT from scratch vs CE, KD and a masked-token-pretrained student (WordNet glosses).

Command (repo root; needs `wordnet-base`):
  python -m benchmarks.text_classification      # → benchmarks/results/text/
  --smoke    the runlocal config on the test fixture, 1 seed, two methods (seconds)
Other flags: --seeds --steps --num_labels --methods --work (teacher and pretrained
student are trained once there and reused) --out.

Every run is the real job, `jobs.run(configs/wordnet.py)`, with the same
student, steps and batch size for every method: 2,500 labelled train glosses drawn in
proportion to the 26 categories (a natural long tail, 42 to 11,587 synsets per
category), the seed varying the subset and the initialisation. Scored on the
fixed 8,211-gloss test split: accuracy, balanced accuracy, macro-F1 and the
accuracy of the tail third of categories (by the student's label counts).

Arms: ce, kd (α·KD on the labelled glosses), kd_transfer (KD on every unlabelled
train gloss: the classic large transfer set), tgt_random, tgt_prior, tgt_gradient
(the sequence VAE explores; the labeler labels), pretrained (the same student,
masked-token pretrained on every train gloss without labels, then fine-tuned with
ce on the 2,500 labels: the paper's comparison point), and the bag-of-embeddings
student with ce and tgt_random. The teacher (sequence VAE + transformer labeler
on all train labels) and the pretrained student are trained once, in --work.
Finished runs are cached in OUT/runs.jsonl: a rerun resumes.
"""

import argparse
import json
import os
import platform
import sys
import time

import jax
import numpy as np

from benchmarks.sample_efficiency import RunLog
from tgt_jax import configlib
from tgt_jax import jobs
from tgt_jax import tgt

CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "wordnet.py")
FIXTURE = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "wordnet")
# (arm name, method, student model, fine-tune from the pretrained student)
ARMS = (("ce", "ce", "text_transformer", False),
        ("kd", "kd", "text_transformer", False),
        ("pretrained", "ce", "text_transformer", True),
        ("tgt_random", "tgt_random", "text_transformer", False),
        ("tgt_prior", "tgt_prior", "text_transformer", False),
        ("tgt_gradient", "tgt_gradient", "text_transformer", False),
        ("kd_transfer", "kd_transfer", "text_transformer", False),
        ("bag_ce", "ce", "bag_of_embeddings", False),
        ("bag_tgt_random", "tgt_random", "bag_of_embeddings", False))
METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "tail_accuracy")


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
  p.add_argument("--seeds", type=int, default=3)
  p.add_argument("--steps", type=int, default=None, help="student steps (config default)")
  p.add_argument("--num_labels", type=int, default=2500)
  p.add_argument("--methods", default=",".join(a[0] for a in ARMS))
  p.add_argument("--work", default="/tmp/tgt_text_benchmark",
                 help="teacher/ and pretrained/ are trained here once and reused")
  p.add_argument("--out", default=None)
  p.add_argument("--smoke", action="store_true")
  args = p.parse_args(argv)
  if args.smoke:
    args.seeds, args.num_labels, args.methods = 1, 100, "ce,tgt_random"
  args.out = args.out or os.path.join(os.path.dirname(__file__), "results",
                                      "text_smoke" if args.smoke else "text")
  unknown = set(args.methods.split(",")) - {a[0] for a in ARMS}
  if unknown:
    p.error(f"unknown --methods {sorted(unknown)}; known: {[a[0] for a in ARMS]}")
  return args


def make_config(args, **overrides):
  arg = "runlocal" if args.smoke else ""
  job = overrides.pop("job", None)
  if job:
    arg = f"{arg},job={job}" if arg else f"job={job}"
  extra = {"data.dir": FIXTURE} if args.smoke else {}
  if args.steps and not job:
    extra["num_train_steps"] = args.steps
  return configlib.load(CONFIG, arg, **{"data.num_labels": args.num_labels,
                                        "teacher.dir": os.path.join(args.work, "teacher"),
                                        "pretrain.dir": os.path.join(args.work, "pretrained"),
                                        **extra, **overrides})


def ensure_shared_jobs(args, needs_pretrained):
  """Teacher and pretrained student in --work, trained once (their own results.json)."""
  reports = {}
  for job, marker, wanted in (("teacher", "teacher/teacher.json", True),
                              ("pretrain", "pretrained/pretrained.json", needs_pretrained)):
    path = os.path.join(args.work, marker)
    if wanted and not os.path.exists(path):
      start = time.time()
      jobs.run(make_config(args, job=job), os.path.join(args.work, f"{job}_job"))
      print(f"trained the {job} in {time.time() - start:.0f} s", flush=True)
    if os.path.exists(path):
      with open(path, encoding="utf-8") as f:
        reports[job] = json.load(f)
  return reports


def summarize(rows):
  """{arm: {metric: (mean, std)}, seconds}: percentages over seeds."""
  out = {}
  for arm in dict.fromkeys(r["arm"] for r in rows):
    mine = [r for r in rows if r["arm"] == arm]
    entry = {m: (100 * np.mean([r["test"][m] for r in mine]),
                 100 * np.std([r["test"][m] for r in mine])) for m in METRICS}
    entry["seeds"] = len(mine)
    entry["seconds"] = float(np.mean([r["wall_time_sec"] for r in mine]))
    out[arm] = entry
  return out


def markdown(summary):
  lines = ["| arm | student | test accuracy | balanced accuracy | macro-F1 | tail accuracy | "
           "seeds | s/run |", "|---|---|---|---|---|---|---|---|"]
  students = {a[0]: a[2] for a in ARMS}
  for arm, e in summary.items():
    cells = " | ".join(f"{e[m][0]:.1f} ± {e[m][1]:.1f}" for m in METRICS)
    lines.append(f"| {arm} | {students[arm]} | {cells} | {e['seeds']} | {e['seconds']:.0f} |")
  return "\n".join(lines)


def targets(summary):
  """The issue's targets on test accuracy: TGT from scratch ≥ pretrained and ≥ KD + 3."""
  tgt_arms = [a for a in tgt.EXPLORATION_METHODS if a in summary]
  if not tgt_arms:
    return []
  best = max(tgt_arms, key=lambda a: summary[a]["accuracy"][0])
  acc = summary[best]["accuracy"][0]
  out = [f"best TGT arm: {best} at {acc:.1f}% test accuracy"]
  for name, ref, margin in (("pretrained", "pretrained", 0.0), ("KD + 3", "kd", 3.0)):
    if ref in summary:
      gap = acc - summary[ref]["accuracy"][0] - margin
      out.append(f"TGT ≥ {name}: {'met' if gap >= 0 else 'missed'} ({gap:+.1f} points)")
  return out


def main(argv=None):
  args = parse_args(argv)
  os.makedirs(args.out, exist_ok=True)
  start = time.time()
  arms = [a for a in ARMS if a[0] in args.methods.split(",")]
  reports = ensure_shared_jobs(args, any(a[3] for a in arms))
  settings = {"steps": args.steps, "num_labels": args.num_labels, "smoke": args.smoke}
  log = RunLog(os.path.join(args.out, "runs.jsonl"), settings)
  rows = []
  for seed in range(args.seeds):
    for arm, method, student, finetune in arms:
      row = log.get(arm, "none", f"n{args.num_labels}", seed)
      if row is None:
        overrides = {"seed": seed, "method": method, "student.model": student}
        if finetune:
          overrides["student.init_from"] = os.path.join(args.work, "pretrained")
        workdir = os.path.join(args.work, "runs", f"{arm}_n{args.num_labels}_s{seed}")
        result = jobs.run(make_config(args, **overrides), workdir)
        row = log.add({"arm": arm, "augment": "none", "cell": f"n{args.num_labels}",
                       "seed": seed, "test": result["test"],
                       "validation": result.get("validation"),
                       "wall_time_sec": result["wall_time_sec"]})
        print(f"{arm} seed {seed}: test accuracy {100 * row['test']['accuracy']:.1f}%, "
              f"macro-F1 {100 * row['test']['macro_f1']:.1f} ({row['wall_time_sec']:.0f} s)",
              flush=True)
      rows.append(row)
  summary = summarize(rows)
  header = (f"WordNet noun glosses → 26 supersenses, {args.num_labels} labels, {args.seeds} "
            f"seed(s), {args.steps or 'config'} steps; {platform.machine()} "
            f"{os.cpu_count()} CPU cores, jax {jax.__version__}, {jax.devices()[0].platform}; "
            f"{len(rows)} runs ({log.trained_now} trained now) in "
            f"{(time.time() - start) / 60:.1f} min.")
  teacher = reports.get("teacher", {}).get("report", {})
  shared = ", ".join(f"{k} {v:.3f}" for k, v in sorted(teacher.items())
                     if isinstance(v, float))
  if "pretrain" in reports:
    shared += (f"; pretrained student: validation masked-token accuracy "
               f"{reports['pretrain']['validation_masked_accuracy']:.3f}")
  text = "\n\n".join([header, f"Teacher: {shared}", markdown(summary),
                      "\n".join(f"- {t}" for t in targets(summary))]) + "\n"
  with open(os.path.join(args.out, "table.md"), "w", encoding="utf-8") as f:
    f.write(text)
  with open(os.path.join(args.out, "results.json"), "w", encoding="utf-8") as f:
    json.dump({"header": header, "summary": summary, "rows": rows, "shared": reports}, f,
              indent=1, default=str)
  print(text)
  return summary


if __name__ == "__main__":
  sys.exit(main() and 0)
