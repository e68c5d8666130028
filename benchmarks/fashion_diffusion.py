r"""Does a better generator make a better student? The VAE teacher against the diffusion teacher.

Command (repo root; the VAE teacher and the DiT trained first by their jobs):
  python -m benchmarks.fashion_diffusion --teacher_dir=WORKDIR/teacher \
      --diffusion_dir=WORKDIR/diffusion          # → benchmarks/results/fashion_diffusion/
  --smoke   1 seed, k10, 3 student steps, N = 2 (the test's setting; runlocal teachers)

Both teachers share E, the decoder and the labeler (teacher.kind='latent_diffusion' is a DiT
trained in the VAE's latent, teachers/latent_diffusion.py): only how x' is found differs.
VAE: x' = G(E(x) + σ·ε) (tgt_random) or G(z), z ~ N(0, I) (tgt_prior). Diffusion: the same
z + σ·ε denoised under the example's label (SDEdit) or pure noise denoised under a uniform
class (tgt_prior), teacher.ddim_steps DDIM steps with guidance. Every arm goes through the
offline cache as users run it: `job=synthesize` (N x' per labelled example), then a
student with tgt_cache.dir (same labeler, same 400 steps × 64, same augmentation as the
online arms of benchmarks/fashion_mnist.py chose: flip_shift). Cells: 10 labels per class
(k10) and the long tail ρ = 100 (lt100); 3 seeds (each seed its own subset and cache).
Reported: balanced test accuracy (and head/medium/tail on lt100), the synthesis seconds
per cache and per sample, XLA's FLOPs of one DiT pass, and sample grids of both teachers.
--teachers=vae,diffusion,diffusion_g1 adds the DiT sampled without guidance (g = 1; at k10
only, ARM_CELLS). Runs are
logged in OUT/runs.jsonl, so a rerun resumes (and adds arms without redoing the others).
"""

import argparse
import json
import os
import sys
import time

if __package__ in (None, ""):
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np

from benchmarks import dit_flops, se_report, seeds
from benchmarks.fashion_mnist import CELLS, fashion_config
from benchmarks.sample_efficiency import RunLog, run_header
from tgt_jax import jobs, metrics
from tgt_jax.data import synthetic_cache
from tgt_jax.teachers import latent_diffusion

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# name → (configs/fashion_mnist.py teacher, overrides). diffusion_g1: the DiT without guidance
# (more diverse samples, less class-typical), an optional arm (--teachers).
TEACHER_ARMS = {"vae": ("vae", {}), "diffusion": ("diffusion", {}),
                "diffusion_g1": ("diffusion", {"teacher.guidance": 1.0})}
TEACHERS = ("vae", "diffusion")
ARM_CELLS = {"diffusion_g1": ("k10",)}      # cut to fit the session: the optional arm at k10 only
METHODS = ("tgt_random", "tgt_prior")
BENCH_CELLS = ("k10", "lt100")
AUGMENT = "flip_shift"      # what benchmarks/fashion_mnist.py chose for both methods online


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
  p.add_argument("--out", default="")
  p.add_argument("--teacher_dir", required=True, help="the VAE teacher (configs/fashion_mnist.py)")
  p.add_argument("--diffusion_dir", required=True, help="the DiT (job=diffusion) on that VAE")
  p.add_argument("--data_dir", default="")
  p.add_argument("--seeds", type=int, default=3)
  p.add_argument("--steps", type=int, default=400)
  p.add_argument("--batch_size", type=int, default=64)
  p.add_argument("--samples", type=int, default=16, help="N: x' per labelled example")
  p.add_argument("--ddim_steps", type=int, default=25)
  p.add_argument("--cells", default=",".join(BENCH_CELLS))
  p.add_argument("--teachers", default=",".join(TEACHERS), help=f"of {list(TEACHER_ARMS)}")
  p.add_argument("--smoke", action="store_true")
  args = p.parse_args(argv)
  args.teachers = tuple(t for t in args.teachers.split(",") if t)
  if any(t not in TEACHER_ARMS for t in args.teachers):
    p.error(f"--teachers: choose from {list(TEACHER_ARMS)}, got {list(args.teachers)}.")
  if args.smoke:
    args.seeds, args.steps, args.samples, args.cells = 1, 3, 2, "k10"
  args.cells = tuple(c for c in args.cells.split(",") if c)
  if any(c not in BENCH_CELLS for c in args.cells):
    p.error(f"--cells: choose from {list(BENCH_CELLS)}, got {list(args.cells)}.")
  args.out = args.out or os.path.join(REPO, "benchmarks", "results",
                                      "fashion_diffusion" + ("_smoke" if args.smoke else ""))
  args.seed_list = tuple(range(args.seeds))
  return args


def config_of(args, name, method, seed, cell, **overrides):
  teacher, extra = TEACHER_ARMS[name]
  arg = ",".join(filter(None, ["runlocal" if args.smoke else "", f"teacher={teacher}",
                               f"method={method}"]))
  if teacher == "diffusion":
    extra = {"teacher.diffusion_dir": args.diffusion_dir, "teacher.ddim_steps": args.ddim_steps,
             **extra}
  return fashion_config(arg, **{
      "seed": seed, "teacher.dir": args.teacher_dir, "data.data_dir": args.data_dir,
      "num_train_steps": args.steps, "batch_size": args.batch_size, "data.augment": AUGMENT,
      **CELLS[cell], **extra, **overrides})


def run_cell(args, log, teacher, method, cell, seed):
  """job=synthesize, then the cached student: two real jobs, their rows in the log."""
  arm = f"{teacher}/{method}"
  work = os.path.join(args.out, "runs", f"{teacher}_{method}_{cell}_seed{seed}")
  cache = os.path.join(work, "synthetic")
  if log.get(f"synthesize/{arm}", "none", cell, seed) is None:
    start = time.time()
    made = jobs.run(config_of(args, teacher, method, seed, cell, job="synthesize", **{
        "tgt_cache.dir": cache, "tgt_cache.samples_per_example": args.samples}),
                    os.path.join(work, "synthesize"))
    log.add({"arm": f"synthesize/{arm}", "augment": "none", "cell": cell, "seed": seed,
             "seconds": time.time() - start, "num_records": made["num_records"]})
  if log.get(arm, AUGMENT, cell, seed) is None:
    start = time.time()
    results = jobs.run(config_of(args, teacher, method, seed, cell, **{
        "tgt_cache.dir": cache, "tgt_cache.samples": args.samples}), os.path.join(work, "student"))
    log.add({"arm": arm, "augment": AUGMENT, "cell": cell, "seed": seed,
             "test": results["test"], "validation": results["validation"],
             "seconds": time.time() - start})
    print(f"{arm:24s} {cell:6s} seed {seed} test "
          f"{100 * results['test']['balanced_accuracy']:.1f}", flush=True)
  return [log.get(f"synthesize/{arm}", "none", cell, seed), log.get(arm, AUGMENT, cell, seed)]


def cache_stats(cache):
  """What the teacher says on a cache's x': mean entropy of softmax(T(x')) (nats), mean top
  probability, and the rarest class's share of T's argmax (0.1 = balanced over 10)."""
  reader = synthetic_cache.Reader(cache, check=False)
  examples = np.repeat(np.arange(reader.num_examples), reader.samples)
  samples = np.tile(np.arange(reader.samples), reader.num_examples)
  logits = reader.read(examples, samples)["synthetic_teacher_logits"].astype(np.float64)
  reader.close()
  logits -= logits.max(-1, keepdims=True)
  probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  entropy = -(probs * np.log(np.maximum(probs, 1e-30))).sum(-1)
  shares = np.bincount(probs.argmax(-1), minlength=probs.shape[-1]) / len(probs)
  return {"entropy_nats": float(entropy.mean()), "top_probability": float(probs.max(-1).mean()),
          "rarest_class_share": float(shares.min())}


def sample_grid(args, path, per_row=12):
  """x' of every arm's seed-0 k10 cache (the first `per_row` examples, sample 0), a row each."""
  rows, names = [], []
  for name in args.teachers:
    for method in METHODS:
      cache = os.path.join(args.out, "runs", f"{name}_{method}_k10_seed0", "synthetic")
      if os.path.exists(os.path.join(cache, "manifest.json")):
        reader = synthetic_cache.Reader(cache, check=False)
        n = min(per_row, reader.num_examples)
        rows.append(reader.read(np.arange(n), np.zeros(n, np.int64))["synthetic_image"])
        reader.close()
        names.append(f"{name}/{method}")
  if rows:
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
    pixels = metrics.MetricWriter.pixels(metrics.image_grid(rows))
    fig, ax = plt.subplots(figsize=(8, 0.75 * len(rows) + 0.4))
    ax.imshow(pixels.squeeze(-1), cmap="gray", vmin=0, vmax=255)
    step = pixels.shape[0] / len(rows)
    ax.set_yticks([step * (i + 0.5) for i in range(len(rows))], names, fontsize=8)
    ax.set_xticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
  return names


def report(args, header, rows):
  """table.md, results.csv and results.json in OUT; returns the printed text."""
  students = [r for r in rows if not r["arm"].startswith("synthesize/")]
  synth = [r for r in rows if r["arm"].startswith("synthesize/")]
  summary = se_report.summarize(students)
  cost = {key: float(np.mean([r["seconds"] / r["num_records"] for r in group]))
          for key, group in seeds.group_by(synth, "arm", "cell").items()}
  head = ["teacher", "method"] + [c for c in args.cells] + (
      ["lt100 head", "lt100 medium", "lt100 tail"] if "lt100" in args.cells else []) + [
          f"synthesis ms/x' ({c})" for c in args.cells]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  present = [t for t in TEACHER_ARMS if any(r["arm"].startswith(f"{t}/") for r in students)]
  for teacher in present:
    for method in METHODS:
      arm = f"{teacher}/{method}"
      cells = [se_report._fmt(summary.get((arm, c))) for c in args.cells]
      groups = ([f"{summary[(arm, 'lt100')][g]:.1f}" if (arm, "lt100") in summary else "—"
                 for g in se_report.GROUPS] if "lt100" in args.cells else [])
      ms = [f"{1000 * cost[(f'synthesize/{arm}', c)]:.2f}"
            if (f"synthesize/{arm}", c) in cost else "—" for c in args.cells]
      lines.append("| " + " | ".join([teacher, f"`{method}`", *cells, *groups, *ms]) + " |")
  diffs = []
  for name in (t for t in present if t != "vae"):
    for method in METHODS:
      for cell in args.cells:
        by_seed = {(r["arm"], r["seed"]): r["test"]["balanced_accuracy"] for r in students
                   if r["cell"] == cell}
        paired = [100 * (by_seed[(f"{name}/{method}", s)] - by_seed[(f"vae/{method}", s)])
                  for s in args.seed_list if (f"{name}/{method}", s) in by_seed
                  and (f"vae/{method}", s) in by_seed]
        if paired:
          mean, std = seeds.mean_std(paired)
          label = "diffusion" if name == "diffusion" else name
          diffs.append(f"{label} − VAE, `{method}` {cell}: {mean:+.1f} ± {std:.1f} points "
                       f"(paired over {len(paired)} seeds)")
  stats = {}
  for name in present:
    for method in METHODS:
      for cell in args.cells:
        caches = [os.path.join(args.out, "runs", f"{name}_{method}_{cell}_seed{s}", "synthetic")
                  for s in args.seed_list]
        found = [cache_stats(c) for c in caches if os.path.exists(os.path.join(c,
                                                                               "manifest.json"))]
        if found:
          stats[(name, method, cell)] = {k: float(np.mean([f[k] for f in found]))
                                         for k in found[0]}
  stat_lines = ["| teacher | method | cell | T's entropy on x' (nats) | T's top probability | "
                "rarest class's share of T's argmax |", "|---|---|---|---|---|---|"]
  stat_lines += [f"| {n} | `{m}` | {c} | {v['entropy_nats']:.3f} | {v['top_probability']:.3f} | "
                 f"{v['rarest_class_share']:.3f} |" for (n, m, c), v in stats.items()]
  grid = sample_grid(args, os.path.join(args.out, "cache_samples.png"))
  text = "\n".join([*se_report.header_lines(header), "",
                    f"N = {args.samples} x' per labelled example; DiT sampling: "
                    f"{args.ddim_steps} DDIM steps (× 2 passes with guidance); one DiT pass: "
                    f"{1000 * header['dit_gflops']:.1f} MFLOPs per sample (XLA's count)", "",
                    "Balanced test accuracy (%), mean ± std over seeds, students from the cache:",
                    "", *lines, "", *diffs, "",
                    "What the labeler says on the cached x' (mean over seeds' caches):", "",
                    *stat_lines, "",
                    f"cache_samples.png: x' of the seed-0 k10 caches, a row each: {grid}"])
  header["cache_stats"] = [{"teacher": n, "method": m, "cell": c, **v}
                           for (n, m, c), v in stats.items()]
  os.makedirs(args.out, exist_ok=True)
  se_report.write_csv(os.path.join(args.out, "results.csv"), summary)
  se_report.write_text_and_json(args.out, text, header, {"all": AUGMENT}, summary,
                                [(d, None) for d in diffs], rows)
  return text


def main(argv=None):
  args = parse_args(argv)
  os.makedirs(args.out, exist_ok=True)
  start = time.time()
  log = RunLog(os.path.join(args.out, "runs.jsonl"),
               {"steps": args.steps, "batch_size": args.batch_size, "samples": args.samples,
                "ddim_steps": args.ddim_steps, "teacher": args.teacher_dir,
                "diffusion": args.diffusion_dir})
  rows = []
  for seed in args.seed_list:
    for cell in args.cells:
      for teacher in (t for t in args.teachers if cell in ARM_CELLS.get(t, BENCH_CELLS)):
        for method in METHODS:
          rows += run_cell(args, log, teacher, method, cell, seed)
  meta = json.loads(open(os.path.join(args.diffusion_dir, latent_diffusion.META_FILE)).read())
  header = run_header("fashion_diffusion", argv, args, start, rows,
                      (log.trained_now, len(log.rows) - log.trained_now))
  from tgt_jax.models import dit  # pylint: disable=g-import-not-at-top
  header["dit_gflops"] = dit_flops.xla_flops(dit.DiTConfig(**meta["dit"]), 1) / 1e9
  header["dit_report"] = meta["report"]
  text = report(args, header, rows)
  print(text, flush=True)
  return rows


if __name__ == "__main__":
  main()
