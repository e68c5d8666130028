r"""Reverse-dictionary retrieval on WordNet: TGT against CE and KD at 2,500 and 10,000 labels.

Commands behind benchmarks/results/retrieval/ (repo root, 2 CPU cores; README "Retrieval"):
  python -m benchmarks.retrieval --num_pairs=2500       # 18 runs: every method × 3 seeds
  python -m benchmarks.retrieval --num_pairs=10000      # 18 more (run beside the first)
  python -m benchmarks.retrieval --cached_only          # the combined table
  (each with --teacher_dir=T/teacher --retrieval_teacher_dir=T/retrieval_teacher, the two
  teachers trained first: 16 min for the text VAE, 9 min for the retrieval teacher)
  --quick   2 seeds, 2,500 pairs, 500 steps (→ retrieval_quick/)
  --smoke   the runlocal config on the test fixture, 1 seed, ce and tgt_random, 64 pairs
            (→ retrieval_smoke/; ~30 s once the teachers exist, ~1 min from nothing)
Other flags: --seeds --methods --num_pairs --steps --data_dir --teacher_dir
  --retrieval_teacher_dir --out, --cached_only (tabulate finished runs, train none),
  --retrieval_teacher=minilm (all-MiniLM-L6-v2 zero-shot as the retrieval teacher, the
  config's teacher=minilm; → OUT retrieval_minilm[_quick|_smoke]/; --smoke uses the tiny
  BERT fixture; tgt_gradient is refused with it, so list --methods without it).

Every run is the real student job (jobs.run with job=retrieval) of
configs/wordnet_retrieval.py with one shared text teacher (the sequence VAE of
configs/wordnet.py:job=teacher) and one shared retrieval teacher (dual_hybrid on
every train pair), both trained first into OUT/ if missing. Every method sees the
same candidates (positives + the teacher's hard negatives), steps and batch size;
the seed draws the labelled pairs and the initialisation. Scores: test queries
ranked against every document (recall@1, recall@10, MRR, mean ± std over seeds).
A run whose OUT/runs/.../results.json exists is not trained again.
"""

import argparse
import json
import os
import sys
import time

if __package__ in (None, ""):     # python benchmarks/retrieval.py
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable=g-import-not-at-top,wrong-import-position
import jax
import numpy as np

from benchmarks import seeds
from tgt_jax import configlib, tgt
from tgt_jax.teachers import generative
from tgt_jax.teachers import retrieval as retrieval_teacher
from tgt_jax import jobs
from tgt_jax.data import reverse_dictionary

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(REPO, "tests", "fixtures", "wordnet")
METRICS = ("recall@1", "recall@10", "mrr")
DEFAULT_METHODS = "ce,kd,tgt_random,tgt_prior,kd_transfer,tgt_gradient"
TEACHER_TARGET = 12.0             # % test recall@10: twice the TF-IDF overlap's 6.0
TGT_MARGIN = 3.0                  # points of recall@10 over kd at the smallest label budget
GROUPS = ("all", "seen_positive", "unseen_positive", "has_query_word", "no_query_word")


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
  p.add_argument("--out", default="", help="default benchmarks/results/retrieval[_quick|_smoke]")
  p.add_argument("--seeds", type=int, default=3)
  p.add_argument("--methods", default="", help=f"default {DEFAULT_METHODS}")
  p.add_argument("--num_pairs", default="2500,10000")
  p.add_argument("--steps", type=int, default=0, help="student steps (default: the config's)")
  p.add_argument("--data_dir", default="", help="WordNet directory (default /usr/share/wordnet)")
  p.add_argument("--teacher_dir", default="", help="text VAE (default OUT/teacher)")
  p.add_argument("--retrieval_teacher_dir", default="", help="default OUT/retrieval_teacher")
  p.add_argument("--cached_only", action="store_true",
                 help="train nothing: tabulate the runs OUT/runs already holds")
  p.add_argument("--quick", action="store_true")
  p.add_argument("--smoke", action="store_true")
  p.add_argument("--retrieval_teacher", default="dual_hybrid", help="dual_hybrid | minilm")
  args = p.parse_args(argv)
  if args.quick:
    args.seeds, args.num_pairs, args.steps = 2, "2500", args.steps or 500
  if args.smoke:
    args.seeds, args.num_pairs = 1, "64"
    args.methods = args.methods or "ce,tgt_random"
    args.data_dir = args.data_dir or FIXTURE
  if not args.out:     # a quick or smoke run never overwrites the full results
    suffix = next((f"_{m}" for m in ("smoke", "quick") if getattr(args, m)), "")
    teacher = "" if args.retrieval_teacher == "dual_hybrid" else f"_{args.retrieval_teacher}"
    args.out = os.path.join(REPO, "benchmarks", "results", "retrieval" + teacher + suffix)
  args.method_list = tuple(m for m in (args.methods or DEFAULT_METHODS).split(",") if m)
  args.num_pairs_list = tuple(int(n) for n in args.num_pairs.split(",") if n)
  args.seed_list = tuple(range(args.seeds))
  return args


def retrieval_config(args, **overrides):
  """configs/wordnet_retrieval.py (runlocal for --smoke) with the shared teachers' dirs."""
  overrides = {"data.dir": args.data_dir, "teacher.dir": args.teacher_dir,
               "retrieval_teacher.dir": args.retrieval_teacher_dir, **overrides}
  if args.steps:
    overrides["num_train_steps"] = args.steps
  arg = ",".join((["runlocal"] if args.smoke else []) + [f"teacher={args.retrieval_teacher}"])
  return configlib.load(os.path.join(REPO, "configs", "wordnet_retrieval.py"), arg, **overrides)


def prepare_teachers(args):
  """Trains the text VAE and the retrieval teacher into OUT/ unless they exist."""
  args.teacher_dir = args.teacher_dir or os.path.join(args.out, "teacher")
  args.retrieval_teacher_dir = (args.retrieval_teacher_dir or
                                os.path.join(args.out, "retrieval_teacher"))
  if not generative.exists(args.teacher_dir):
    print(f"Training the text teacher into {args.teacher_dir} ...", flush=True)
    config = retrieval_config(args)
    text = configlib.load(os.path.join(REPO, "configs", "wordnet.py"),
                          "runlocal,job=teacher" if args.smoke else "job=teacher",
                          **{"teacher.dir": args.teacher_dir,
                             **{f"data.{k}": config.data[k] for k in ("dir", "max_len",
                                                                       "vocab_size")}})
    jobs.run(text, os.path.join(args.out, "jobs", "text_teacher"))
  if not retrieval_teacher.exists(args.retrieval_teacher_dir):
    print(f"Training the retrieval teacher into {args.retrieval_teacher_dir} ...", flush=True)
    jobs.run(retrieval_config(args, job="retrieval_teacher"),
                                       os.path.join(args.out, "jobs", "retrieval_teacher"))
  return retrieval_teacher.read_meta(args.retrieval_teacher_dir)


def run_all(args):
  """Every num_pairs × method × seed (cached by its results.json); returns the result rows."""
  rows = []
  for num_pairs in args.num_pairs_list:
    for method in args.method_list:
      for seed in args.seed_list:
        config = retrieval_config(args, method=method, seed=seed,
                                  **{"data.num_pairs": num_pairs})
        workdir = os.path.join(args.out, "runs", f"steps{config.num_train_steps}",
                               f"pairs{num_pairs}", method, f"seed{seed}")
        path = os.path.join(workdir, "results.json")
        if os.path.exists(path):
          with open(path, encoding="utf-8") as f:
            result = json.load(f)
        elif args.cached_only:
          continue
        else:
          result = jobs.run(config, workdir)
        rows.append(result)
        print(f"{method:14s} pairs {num_pairs:6d} seed {seed}  " +
              "  ".join(f"{k} {100 * result[k]:.2f}" for k in METRICS) +
              f"  ({result['wall_time_sec']:.0f} s)", flush=True)
  return rows


def lexical_reference(task, split="test", seed=0):
  """Recall@1/@10 and MRR of TF-IDF cosine between gloss and lemma set: no training at all.

  Document ids extend the query vocabulary, so the same word has the same id on
  both sides and a sparse product scores the overlap. Lexical scores tie often
  (every document that shares no word scores 0), so ties are broken at random,
  except between identical lemma sets, which tie in the target's favour as in
  retrieval.target_ranks.
  """
  import scipy.sparse   # pylint: disable=g-import-not-at-top
  from sklearn.preprocessing import normalize   # pylint: disable=g-import-not-at-top
  vocab_size, keys = len(task.documents.vocabulary), task.documents.keys

  def bags(tokens):
    rows, cols = np.nonzero(tokens > 2)                     # no padding, unknown or mask
    m = scipy.sparse.csr_matrix((np.ones(len(rows)), (rows, tokens[rows, cols])),
                                shape=(len(tokens), vocab_size))
    m.data[:] = 1.0                                        # presence, not counts
    return m

  docs = bags(task.documents.tokens)
  idf = np.log((docs.shape[0] + 1) / (np.asarray(docs.sum(axis=0)).ravel() + 1))
  docs = normalize(docs.multiply(idf).tocsr())
  queries = normalize(bags(task.queries[split]).multiply(idf).tocsr())
  targets, rng, ranks = task.doc_ids[split], np.random.default_rng(seed), []
  for start in range(0, len(targets), 256):
    scores = (queries[start:start + 256] @ docs.T).toarray()
    target = targets[start:start + 256]
    own = scores[np.arange(len(target)), target][:, None]
    ties = np.sum((scores == own) & (keys[None] != keys[target][:, None]), axis=1)
    ranks.append(1 + np.sum(scores > own, axis=1) + rng.integers(0, ties + 1))
  ranks = np.concatenate(ranks)
  return {"recall@1": float(np.mean(ranks <= 1)), "recall@10": float(np.mean(ranks <= 10)),
          "mrr": float(np.mean(1.0 / ranks))}


def summarize(rows):
  """{(method, num_pairs): {metric: (mean, std), "seconds", "n"}} over seeds, in percent."""
  out = {}
  for key, group in seeds.group_by(rows, "method", "num_pairs").items():
    out[key] = {"n": len(group), "seconds": float(np.mean([r["wall_time_sec"] for r in group])),
                **{m: seeds.mean_std([100 * r[m] for r in group]) for m in METRICS}}
  return out


def markdown(header, summary, teacher_meta, args, lexical=None):
  lines = [f"# {header['command']}",
           f"{header['device']}, {header['cpu_count']} CPUs, jax {header['jax']}; "
           f"{header['steps']} steps × batch {header['batch_size']} per run; seeds "
           f"{list(args.seed_list)}; {header['wall_time_sec'] / 60:.1f} min wall", "",
           "Test glosses ranked against all documents (%, mean ± std over seeds).", "",
           "| method | labelled pairs | recall@1 | recall@10 | MRR | s/run |",
           "|---|---|---|---|---|---|"]
  for num_pairs in args.num_pairs_list:
    for method in args.method_list:
      entry = summary.get((method, num_pairs))
      if entry:
        cols = [f"{entry[m][0]:.2f} ± {entry[m][1]:.2f}" for m in METRICS]
        if entry["n"] < len(args.seed_list):     # say so: its ± is not over every seed
          cols = [f"{c} ({entry['n']} of {len(args.seed_list)} seeds)" if i == 1 else c
                  for i, c in enumerate(cols)]
        lines.append(f"| `{method}` | {num_pairs} | " + " | ".join(cols) +
                     f" | {entry['seconds']:.0f} |")
  test = teacher_meta["report"]["test"]
  trained = "zero-shot, no training" if "encoder_dir" in teacher_meta else "all train pairs"
  lines.append(f"| retrieval teacher `{teacher_meta['model']}` ({trained}) | all | " +
               " | ".join(f"{100 * test[m]:.2f}" for m in METRICS) + " | — |")
  diagnostics = teacher_meta.get("diagnostics", {}).get("test")
  if diagnostics:
    for scorer, label in (("dense_only", "its dense score alone"),
                          ("through_word_table", "the query's VAE words through the WordPiece "
                                                 "table (the student step's path)"),
                          ("lexical_only", "its TF-IDF term alone (query words, no training)")):
      if scorer not in diagnostics:
        continue
      lines.append(f"| teacher: {label} | — | " + " | ".join(
          f"{100 * diagnostics[scorer]['all'][m]:.2f}" for m in METRICS) + " | — |")
  if lexical:
    lines.append("| TF-IDF gloss–lemma overlap, all lemma words (no training) | — | " +
                 " | ".join(f"{100 * lexical[m]:.2f}" for m in METRICS) + " | — |")
  if diagnostics:
    sizes = {"all": diagnostics["teacher"]["all"]["num_queries"], **diagnostics["group_sizes"]}
    lines += ["", "Test recall@10 (%) by the target document: ever a train positive or not, "
              "holds a query word or not.", "",
              "| scorer | " + " | ".join(GROUPS) + " |", "|---|" + "---|" * len(GROUPS),
              "| queries | " + " | ".join(str(sizes[g]) for g in GROUPS) + " |"]
    for scorer in ("teacher", "dense_only", "through_word_table", "lexical_only"):
      if scorer not in diagnostics:
        continue
      lines.append(f"| {scorer} | " + " | ".join(
          f"{100 * diagnostics[scorer][g]['recall@10']:.2f}" if g in diagnostics[scorer]
          else "—" for g in GROUPS) + " |")
  lines += [""] + targets(summary, teacher_meta, args)
  return "\n".join(lines) + "\n"


def targets(summary, teacher_meta, args):
  """The issue's targets, each with its measured value and met / missed."""
  verdict = lambda ok: "met" if ok else "missed"
  teacher = 100 * teacher_meta["report"]["test"]["recall@10"]
  out = [f"- Teacher test recall@10 ≥ {TEACHER_TARGET:.0f}%: {teacher:.2f}% — "
         f"{verdict(teacher >= TEACHER_TARGET)}."]
  budget = min(args.num_pairs_list) if args.num_pairs_list else None
  at = lambda method: summary.get((method, budget), {}).get("recall@10", (None,))[0]
  explored = {m: at(m) for m in tgt.EXPLORATION_METHODS if at(m) is not None}
  if explored and at("kd") is not None:
    best = max(explored, key=explored.get)
    gain = explored[best] - at("kd")
    out.append(f"- Best TGT (`{best}`, {explored[best]:.2f}) ≥ `kd` ({at('kd'):.2f}) + "
               f"{TGT_MARGIN:.0f} points at {budget} pairs: {gain:+.2f} points — "
               f"{verdict(gain >= TGT_MARGIN)}.")
    if at("kd_transfer") is not None:
      out.append(f"- Best TGT ≥ `kd_transfer` ({at('kd_transfer'):.2f}) at {budget} pairs: "
                 f"{explored[best] - at('kd_transfer'):+.2f} points — "
                 f"{verdict(explored[best] >= at('kd_transfer'))}.")
  return out


def main(argv=None):
  args = parse_args(argv)
  start = time.time()
  os.makedirs(args.out, exist_ok=True)
  teacher_meta = prepare_teachers(args)
  rows = run_all(args)
  summary = summarize(rows)
  device = jax.devices()[0]
  reference = retrieval_config(args)
  header = {"command": "python -m benchmarks.retrieval " + " ".join(
                sys.argv[1:] if argv is None else argv),
            "device": f"{device.device_kind} ({device.platform}) x {jax.device_count()}",
            "cpu_count": os.cpu_count(), "jax": jax.__version__,
            "steps": reference.num_train_steps, "batch_size": reference.batch_size,
            "seeds": list(args.seed_list), "wall_time_sec": time.time() - start,
            "teacher_dir": args.teacher_dir, "retrieval_teacher_dir": args.retrieval_teacher_dir}
  lexical = lexical_reference(reverse_dictionary.load_task(reference.data))
  table = markdown(header, summary, teacher_meta, args, lexical)
  with open(os.path.join(args.out, "table.md"), "w", encoding="utf-8") as f:
    f.write(table)
  payload = {"header": header, "retrieval_teacher_report": teacher_meta["report"],
             "lexical_reference_test": lexical,
             "summary": [{"method": m, "num_pairs": n, **e} for (m, n), e in summary.items()],
             "runs": rows}
  with open(os.path.join(args.out, "results.json"), "w", encoding="utf-8") as f:
    json.dump(payload, f, indent=2, sort_keys=True)
  print(table, flush=True)
  return rows


if __name__ == "__main__":
  main()
