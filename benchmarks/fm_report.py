"""Tables, CSV, JSON, plot and target checks of benchmarks/fashion_mnist.py's runs.

Everything the README shows is computed here from the run rows, so the tables, the CSV
and the plot always come from the same runs.
"""

import os

import numpy as np

from benchmarks import se_report
from tgt_jax import tgt

P = "pretrained/cnn_small/"
MAIN_CELLS = ("k5", "k10", "k50", "lt100")
LABELS_PER_CLASS = {"k5": 5, "k10": 10, "k50": 50, "k100": 100, "k500": 500, "kall": 5400}
TGT_ARMS = tuple(P + m for m in tgt.EXPLORATION_METHODS)
PEERS = (("logistic_regression", "logistic regression (pixels)"), ("svc", "SVC, RBF (pixels)"))


def summarize(rows):
  return se_report.summarize([r for r in rows if "test" in r])


def _get(summary, arm, cell, field="mean"):
  entry = summary.get((arm, cell))
  return entry[field] if entry else float("nan")


def _fmt(entry):
  return "—" if entry is None else f"{entry['mean']:.1f} ± {entry['std']:.1f}"


def main_table(summary, chosen):
  """One row per arm over the main cells, with lt100's head / medium / tail and s/run."""
  arms = [P + m for m in tgt.METHODS] + [P + "tgt_random_2x_steps"]
  arms += sorted(a for a, _ in summary if a.startswith("tgt_random_cached_"))
  head = ["method", "aug", *MAIN_CELLS, "lt100 head", "lt100 medium", "lt100 tail", "s/run"]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for arm, label in [(a, a.replace(P, "")) for a in arms] + list(PEERS):
    entries = [summary.get((arm, c)) for c in MAIN_CELLS]
    if not any(entries):
      continue
    lt = summary.get((arm, "lt100"))
    aug = chosen.get(arm, entries[1]["augment"] if entries[1] else "none")
    secs = [e["seconds"] for e in entries if e]
    lines.append("| " + " | ".join(
        [f"`{label}`", aug, *(_fmt(e) for e in entries),
         *(f"{lt[g]:.1f}" if lt else "—" for g in se_report.GROUPS),
         f"{np.mean(secs):.0f}"]) + " |")
  labeler = summary.get(("labeler", "pool"))
  if labeler:
    lines.append(f"| the teacher's labeler (trained on all 54,000 pool labels) | — | "
                 f"{labeler['mean']:.1f} (every cell) | | | | | | | — |")
  return "\n".join(lines)


def worth(curve, accuracy):
  """Labels per class a curve [(k, acc)] needs to reach `accuracy`, interpolated in log k."""
  ks, accs = zip(*sorted(curve))
  if not np.isfinite(accuracy):
    return "—"
  if accuracy > max(accs):
    return f"> {ks[int(np.argmax(accs))]:,} (never reached)"
  if accuracy <= accs[0]:
    return f"≤ {ks[0]}"
  for (k0, a0), (k1, a1) in zip(zip(ks, accs), zip(ks[1:], accs[1:])):
    if a0 < accuracy <= a1:
      frac = (accuracy - a0) / (a1 - a0)
      return f"≈ {np.exp(np.log(k0) + frac * (np.log(k1) - np.log(k0))):,.0f}"
  return f"> {ks[-1]:,} (not monotone)"


def sample_size_table(summary):
  """ce and kd against the number of labels, and what the best TGT's k labels are worth."""
  cells = [c for c in LABELS_PER_CLASS if any((P + m, c) in summary for m in ("ce", "kd"))]
  head = ["labels per class", *(f"{LABELS_PER_CLASS[c]:,}" for c in cells)]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for m in ("ce", "kd"):
    lines.append(f"| `{m}` | " + " | ".join(_fmt(summary.get((P + m, c))) for c in cells) + " |")
  lines += ["", "| best TGT at | its accuracy | `ce` needs (labels/class) | "
            "`kd` needs (labels/class) |", "|---|---|---|---|"]
  for cell in ("k5", "k10", "k50"):
    best = best_tgt(summary, cell)
    acc = _get(summary, best, cell)
    if not np.isfinite(acc):
      continue
    needs = []
    for m in ("ce", "kd"):
      curve = [(LABELS_PER_CLASS[c], _get(summary, P + m, c)) for c in LABELS_PER_CLASS]
      curve = [(k, a) for k, a in curve if np.isfinite(a)]
      needs.append(worth(curve, acc) if len(curve) >= 2 else "—")
    lines.append(f"| {LABELS_PER_CLASS[cell]} (`{best.replace(P, '')}`) | {acc:.1f} | "
                 + " | ".join(needs) + " |")
  return "\n".join(lines)


def best_tgt(summary, cell, field="mean"):
  return max(TGT_ARMS, key=lambda a: np.nan_to_num(_get(summary, a, cell, field), nan=-1))


def cache_table(rows, summary):
  synth = [r["seconds"] for r in rows if r.get("arm") == "synthesize"]
  lines = ["| arm (k10) | test balanced acc. | s/run |", "|---|---|---|"]
  for arm in [P + "tgt_random"] + sorted(a for a, _ in summary
                                         if a.startswith("tgt_random_cached_")):
    entry = summary.get((arm, "k10"))
    if entry:
      lines.append(f"| `{arm.replace(P, '')}` | {_fmt(entry)} | {entry['seconds']:.0f} |")
  if synth:
    lines.append(f"| `job=synthesize` (the largest N per labelled image) | — | {np.mean(synth):.0f} |")
  return "\n".join(lines)


def targets(summary):
  """The issue's targets, reported (never asserted): (text, met) pairs."""
  out = []
  best = best_tgt(summary, "k10")
  b, kd, ceiling = (_get(summary, a, "k10") for a in (best, P + "kd", P + "kd_transfer"))
  name = best.replace(P, "")
  out.append((f"best TGT (`{name}`) − kd at 10 labels/class: {b - kd:+.1f} points "
              f"(target ≥ +5)", b - kd >= 5))
  closed = (b - kd) / (ceiling - kd) if ceiling > kd else float("nan")
  out.append((f"best TGT at 10/class closes {100 * closed:.0f}% of the gap between kd "
              f"({kd:.1f}) and kd_transfer ({ceiling:.1f}) (target ≥ 50%)", closed >= 0.5))
  lt_best = best_tgt(summary, "lt100", "tail")
  gain = _get(summary, lt_best, "lt100", "tail") - _get(summary, P + "ce", "lt100", "tail")
  out.append((f"long tail ρ=100: tail-class accuracy of `{lt_best.replace(P, '')}` − ce: "
              f"{gain:+.1f} points (target ≥ +15)", gain >= 15))
  online, cached = _get(summary, P + "tgt_random", "k10"), _get(summary, "tgt_random_cached_64",
                                                               "k10")
  out.append((f"cached tgt_random (N = 64) − online at 10/class, equal steps: "
              f"{cached - online:+.1f} points (target within 0.5)", abs(cached - online) <= 0.5))
  for cell in MAIN_CELLS:
    g, r = _get(summary, P + "tgt_gradient", cell), _get(summary, P + "tgt_random", cell)
    out.append((f"{cell}: tgt_gradient {g:.1f} vs tgt_random {r:.1f} at equal steps "
                f"({_get(summary, P + 'tgt_gradient', cell, 'seconds'):.0f} s vs "
                f"{_get(summary, P + 'tgt_random', cell, 'seconds'):.0f} s a run)", g >= r))
  g2 = _get(summary, P + "tgt_random_2x_steps", "k10")
  out.append((f"k10: tgt_gradient {_get(summary, P + 'tgt_gradient', 'k10'):.1f} vs tgt_random "
              f"at twice the steps {g2:.1f} (about equal wall time: "
              f"{_get(summary, P + 'tgt_gradient', 'k10', 'seconds'):.0f} s vs "
              f"{_get(summary, P + 'tgt_random_2x_steps', 'k10', 'seconds'):.0f} s a run)",
              _get(summary, P + "tgt_gradient", "k10") >= g2))
  return [(text, bool(met)) for text, met in out if "nan" not in text]


def plot(path, summary):
  """Balanced test accuracy against labels per class (log scale), mean ± std over seeds."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120)
  arms = [P + m for m in tgt.METHODS] + [p for p, _ in PEERS]
  colors = plt.get_cmap("tab10").colors
  for i, arm in enumerate(arms):
    pts = [(LABELS_PER_CLASS[c], summary[(arm, c)]) for c in LABELS_PER_CLASS
           if (arm, c) in summary]
    if not pts:
      continue
    ax.errorbar([k for k, _ in pts], [e["mean"] for _, e in pts],
                yerr=[e["std"] for _, e in pts], fmt="--o" if arm in dict(PEERS) else "-o",
                color=colors[i % len(colors)], capsize=3, markersize=4,
                label=arm.replace(P, ""))
  labeler = summary.get(("labeler", "pool"))
  if labeler:
    ax.axhline(labeler["mean"], color="grey", linestyle=":", label="teacher's labeler")
  ax.set_xscale("log")
  ticks = sorted({LABELS_PER_CLASS[c] for a, c in summary if c in LABELS_PER_CLASS})
  ax.set_xticks(ticks, [f"{t:,}" for t in ticks])
  ax.set_xticks([], minor=True)
  ax.set_xlabel("labels per class")
  ax.set_ylabel("balanced test accuracy (%)")
  ax.set_title("Fashion-MNIST, cnn_small student (mean ± std over seeds)")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7, loc="lower right", ncol=2)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def write_all(out_dir, header, rows, chosen, selection):
  """results.json, results.csv, table.md and plot.png in out_dir; returns the printed text."""
  summary = summarize(rows)
  se_report.write_csv(os.path.join(out_dir, "results.csv"), summary)
  checks = targets(summary)
  text = "\n".join([
      *se_report.header_lines(header), "", "Balanced test accuracy (%), mean ± std over seeds:",
      "", main_table(summary, chosen), "",
      "Effective sample size (ce and kd against real labels per class):", "",
      sample_size_table(summary), "", "Offline synthesis at 10 labels per class:", "",
      cache_table(rows, summary), "", "Augmentation choice (validation, k10, seed 0):", "",
      se_report.selection_table(selection, ("none", "flip_shift")), "",
      "Targets:", *[f"- [{'x' if met else ' '}] {t}" for t, met in checks]])
  se_report.write_text_and_json(out_dir, text, header, chosen, summary, checks, rows)
  plot(os.path.join(out_dir, "plot.png"), summary)
  return text
