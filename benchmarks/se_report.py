"""Tables, CSV, JSON, plot and target checks of benchmarks/sample_efficiency.py's runs.

Everything the README shows is computed here from the run rows, so the table,
the CSV and the plot always come from the same run.
"""

import csv
import json
import os

import numpy as np

from benchmarks import seeds

LABELS_PER_CLASS = {"k5": 5, "k10": 10, "k25": 25}
GROUPS = ("head", "medium", "tail")


def _acc(row, group=None, split="test"):
  report = row[split]
  if group is None:
    return 100 * report["balanced_accuracy"]
  return 100 * report.get(f"{group}_accuracy", float("nan"))


def summarize(rows):
  """{(arm, cell): {"mean", "std", "n", "seconds", group means}} over seeds."""
  out = {}
  for key, group in seeds.group_by(rows, "arm", "cell").items():
    mean, std = seeds.mean_std([_acc(r) for r in group])
    entry = {"mean": mean, "std": std,
             "n": len(group), "seconds": float(np.mean([r["seconds"] for r in group])),
             "augment": group[0]["augment"]}
    for g in GROUPS:
      entry[g] = float(np.mean([_acc(r, g) for r in group]))
    out[key] = entry
  return out


def _fmt(entry):
  return "—" if entry is None else f"{entry['mean']:.1f} ± {entry['std']:.1f}"


def markdown_tables(summary, chosen):
  """The README's tables, one per (protocol, student)."""
  arms = sorted({a for a, _ in summary}, key=_arm_order)
  blocks = []
  for prefix, title in (("pretrained/cnn_small/", "cnn_small student, pretrained teacher"),
                        ("same_labels/cnn_small/", "cnn_small student, same-labels teacher"),
                        ("pretrained/mlp/", "mlp student, pretrained teacher")):
    names = [a for a in arms if a.startswith(prefix)]
    if not names:
      continue
    cells = sorted({c for a, c in summary if a in names}, key=_cell_order)
    show_groups = "lt50" in cells
    head = ["method", "aug"] + cells + (["lt50 head", "lt50 medium", "lt50 tail"]
                                        if show_groups else []) + ["s/run"]
    lines = [f"**{title}**", "", "| " + " | ".join(head) + " |",
             "|" + "---|" * len(head)]
    rows = [(a, a[len(prefix):]) for a in names]
    if prefix != "same_labels/cnn_small/":
      rows.append(("svc", "svc (reference peer)"))
    for arm, label in rows:
      entries = [summary.get((arm, c)) for c in cells]
      cols = [f"`{label}`", chosen.get(arm, "none")] + [_fmt(e) for e in entries]
      lt = summary.get((arm, "lt50"))
      if show_groups:
        cols += [f"{lt[g]:.1f}" if lt else "—" for g in GROUPS]
      secs = [e["seconds"] for e in entries if e]
      cols.append(f"{np.mean(secs):.0f}" if secs else "—")
      lines.append("| " + " | ".join(cols) + " |")
    if prefix == "same_labels/cnn_small/" and any(a == "same_labels/labeler" for a, _ in summary):
      entry = summary.get(("same_labels/labeler", "k5"))
      lines.append(f"| the same-labels labeler itself | — | {_fmt(entry)} | — |")
    blocks.append("\n".join(lines))
  return "\n\n".join(blocks)


def _arm_order(arm):
  order = ["ce", "kd", "kd_mixup", "kd_transfer", "tgt_random", "tgt_prior", "tgt_gradient",
           "tgt_gradient_input", "tgt_random_no_labels"]
  name = arm.rsplit("/", 1)[-1]
  return (arm.split("/")[0], arm.split("/")[1] if "/" in arm else "",
          order.index(name) if name in order else len(order))


def _cell_order(cell):
  return list(LABELS_PER_CLASS).index(cell) if cell in LABELS_PER_CLASS else 99


def selection_table(selection, augmentations=("none", "shift")):
  """Validation accuracy of each augmentation per arm on the selection runs: how `aug` was
  chosen."""
  by_arm = {}
  for row in selection:
    if row["arm"].startswith("same_labels/"):     # they take their pretrained twin's choice
      continue
    by_arm.setdefault(row["arm"], {}).setdefault(row["augment"], []).append(
        _acc(row, split="validation"))
  lines = ["| arm | " + " | ".join(f"val. acc. with `{a}`" for a in augmentations) + " |",
           "|---|" + "---|" * len(augmentations)]
  for arm in sorted(by_arm, key=_arm_order):
    vals = [f"{np.mean(by_arm[arm][a]):.1f}" if a in by_arm[arm] else "—"
            for a in augmentations]
    lines.append(f"| `{arm}` | " + " | ".join(vals) + " |")
  return "\n".join(lines)


def targets(summary):
  """Issue 6's targets, reported (never asserted): (text, met) pairs."""
  def get(arm, cell, field="mean"):
    entry = summary.get((arm, cell))
    return entry[field] if entry else float("nan")

  p = "pretrained/cnn_small/"
  tgt_arms = ["tgt_random", "tgt_prior", "tgt_gradient", "tgt_gradient_input"]
  best = max(tgt_arms, key=lambda a: np.nan_to_num(get(p + a, "k5"), nan=-1))
  out = []
  b, kd, ceiling = get(p + best, "k5"), get(p + "kd", "k5"), get(p + "kd_transfer", "k5")
  out.append((f"best TGT (`{best}`) at 5 labels/class: {b:.1f}% (target ≥ 96%)", b >= 96))
  out.append((f"best TGT − kd_transfer ceiling at 5/class: {b - ceiling:+.1f} points "
              f"(target within 2)", b >= ceiling - 2))
  out.append((f"best TGT − KD at 5/class: {b - kd:+.1f} points (target ≥ +5)", b - kd >= 5))
  s = "same_labels/cnn_small/"
  sb = max(get(s + "tgt_random", "k5"), get(s + "tgt_gradient", "k5"))
  out.append((f"same-labels teacher: best TGT − KD at 5/class: {sb - get(s + 'kd', 'k5'):+.1f} "
              f"points (target ≥ +3)", sb - get(s + "kd", "k5") >= 3))
  lt_best = max(tgt_arms, key=lambda a: np.nan_to_num(get(p + a, "lt50", "tail"), nan=-1))
  gain = get(p + lt_best, "lt50", "tail") - get(p + "ce", "lt50", "tail")
  out.append((f"long tail ρ=50: tail-class accuracy of `{lt_best}` − CE: {gain:+.1f} points "
              f"(target ≥ +10)", gain >= 10))
  for cell in ("k5", "k10", "k25", "lt50"):
    g, r = get(p + "tgt_gradient", cell), get(p + "tgt_random", cell)
    if np.isfinite(g) and np.isfinite(r):
      out.append((f"{cell}: tgt_gradient {g:.1f} vs tgt_random {r:.1f} at equal steps "
                  f"({get(p + 'tgt_gradient', cell, 'seconds'):.0f} s vs "
                  f"{get(p + 'tgt_random', cell, 'seconds'):.0f} s per run)", g >= r))
  return [(text, bool(met)) for text, met in out if "nan" not in text]


def plot(path, summary):
  """Balanced test accuracy vs labels per class, one line per arm (cnn_small, both teachers)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120)
  arms = sorted({a for a, _ in summary if "/cnn_small/" in a} | {"svc"}, key=_arm_order)
  colors = plt.get_cmap("tab20").colors
  for i, arm in enumerate(arms):
    pts = [(LABELS_PER_CLASS[c], summary[(arm, c)]) for c in LABELS_PER_CLASS
           if (arm, c) in summary]
    if not pts:
      continue
    x = [k for k, _ in pts]
    style = "--s" if arm.startswith("same_labels") else ("--o" if arm == "svc" else "-o")
    ax.errorbar(x, [e["mean"] for _, e in pts], yerr=[e["std"] for _, e in pts], fmt=style,
                color=colors[i % len(colors)], capsize=3, markersize=4,
                label=arm.replace("pretrained/cnn_small/", "").replace("/cnn_small/", ": "))
  ax.set_xscale("log")
  ax.set_xticks([5, 10, 25], ["5", "10", "25"])
  ax.set_xticks([], minor=True)
  ax.set_xlabel("labels per class")
  ax.set_ylabel("balanced test accuracy (%)")
  ax.set_title("digits, cnn_small student (mean ± std over seeds)")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7, loc="lower right", ncol=2)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def write_csv(path, summary, order=None):
  """results.csv: one line per (arm, cell) of the summary."""
  with open(path, "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(["arm", "cell", "augment", "n_seeds", "mean", "std", *GROUPS, "s_per_run"])
    for (arm, cell), e in sorted(summary.items(), key=order):
      writer.writerow([arm, cell, e["augment"], e["n"], f"{e['mean']:.2f}", f"{e['std']:.2f}",
                       *(f"{e[g]:.2f}" for g in GROUPS), f"{e['seconds']:.1f}"])


def header_lines(header):
  """The command, then the machine, the protocol and this invocation's times."""
  return [f"# {header['command']}",
          f"{header['device']}, {header['cpu_count']} CPUs, jax {header['jax']}; "
          f"{header['steps']} steps × batch {header['batch_size']} per run; seeds "
          f"{header['seeds']}; this invocation: {header['wall_time_sec'] / 60:.1f} min wall, "
          f"{header['runs_trained_now']} runs trained, {header['runs_from_cache']} from "
          f"runs.jsonl; runs in all: {header['run_seconds_total'] / 60:.1f} min"]


def write_text_and_json(out_dir, text, header, chosen, summary, checks, rows):
  """table.md (the printed text) and results.json (everything the tables came from)."""
  with open(os.path.join(out_dir, "table.md"), "w", encoding="utf-8") as f:
    f.write(text + "\n")
  with open(os.path.join(out_dir, "results.json"), "w", encoding="utf-8") as f:
    json.dump({"header": header, "chosen_augment": chosen,
               "summary": [{"arm": a, "cell": c, **e} for (a, c), e in summary.items()],
               "targets": [{"text": t, "met": m} for t, m in checks], "runs": rows}, f, indent=1)


def write_all(out_dir, header, rows, chosen, selection):
  """results.json, results.csv, table.md and plot.png in out_dir; returns the printed text."""
  summary = summarize(rows)
  write_csv(os.path.join(out_dir, "results.csv"), summary,
            lambda kv: (_arm_order(kv[0][0]), _cell_order(kv[0][1])))
  checks = targets(summary)
  text = "\n".join([
      *header_lines(header), "", markdown_tables(summary, chosen), "",
      "Augmentation choice (validation, k5):", "", selection_table(selection), "",
      "Targets:", *[f"- [{'x' if met else ' '}] {t}" for t, met in checks]])
  write_text_and_json(out_dir, text, header, chosen, summary, checks, rows)
  plot(os.path.join(out_dir, "plot.png"), summary)
  return text
