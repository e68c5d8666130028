"""benchmarks/fashion_mnist.py and its report: the report's arithmetic on made-up rows (cheap),
the whole benchmark at its smoke size on the real data (slow)."""

import json
import os

import pytest

from benchmarks import fashion_mnist, fm_report
from tgt_jax.data import tfds_fashion_mnist

P = fm_report.P


def _report(acc, tail=None):
  return {"balanced_accuracy": acc / 100, "head_accuracy": acc / 100,
          "medium_accuracy": acc / 100, "tail_accuracy": (tail if tail is not None else acc) / 100}


def _rows(**means):
  """Two seeds per (arm, cell) at mean ± 1, from {"arm@cell": mean or (mean, tail)}."""
  rows = []
  for key, value in means.items():
    arm, cell = key.split("@")
    mean, tail = value if isinstance(value, tuple) else (value, None)
    for seed, delta in enumerate((-1.0, 1.0)):
      rows.append({"arm": arm, "cell": cell, "seed": seed, "augment": "none", "seconds": 10.0,
                   "test": _report(mean + delta, tail), "validation": _report(mean)})
  return rows


def test_worth_interpolates_in_log_labels_and_says_when_never_reached():
  curve = [(10, 60.0), (100, 80.0), (1000, 90.0)]
  assert fm_report.worth(curve, 70.0) == "≈ 32"          # halfway between 10 and 100 in log k
  assert fm_report.worth(curve, 90.0) == "≈ 1,000"
  assert fm_report.worth(curve, 55.0) == "≤ 10"
  assert fm_report.worth(curve, 95.0).startswith("> 1,000")


def test_targets_report_met_and_missed_with_their_values():
  summary = fm_report.summarize(_rows(**{
      f"{P}kd@k10": 70.0, f"{P}kd_transfer@k10": 80.0, f"{P}tgt_random@k10": 76.0,
      f"{P}tgt_gradient@k10": 74.0, f"{P}ce@lt100": (60.0, 20.0),
      f"{P}tgt_random@lt100": (65.0, 40.0), "tgt_random_cached_64@k10": 75.0}))
  checks = dict(fm_report.targets(summary))
  assert checks["best TGT (`tgt_random`) − kd at 10 labels/class: +6.0 points (target ≥ +5)"]
  assert checks["best TGT at 10/class closes 60% of the gap between kd (70.0) and kd_transfer "
                "(80.0) (target ≥ 50%)"]
  assert checks["long tail ρ=100: tail-class accuracy of `tgt_random` − ce: +20.0 points "
                "(target ≥ +15)"]
  assert not checks["cached tgt_random (N = 64) − online at 10/class, equal steps: -1.0 points "
                    "(target within 0.5)"]
  assert not checks["k10: tgt_gradient 74.0 vs tgt_random 76.0 at equal steps (10 s vs 10 s a run)"]


def test_write_all_writes_tables_csv_json_and_plot(tmp_path):
  rows = _rows(**{f"{P}ce@k10": 60.0, f"{P}ce@k100": 75.0, f"{P}kd@k10": 65.0,
                  f"{P}kd@k100": 80.0, f"{P}tgt_random@k10": 72.0, "svc@k10": 55.0})
  header = {"command": "x", "device": "cpu", "cpu_count": 2, "jax": "0", "steps": 5,
            "batch_size": 4, "seeds": [0, 1], "wall_time_sec": 60.0, "runs_trained_now": 8,
            "runs_from_cache": 0, "run_seconds_total": 80.0}
  text = fm_report.write_all(str(tmp_path), header, rows, {}, [])
  assert "| `ce` | none | — | 60.0 ± 1.4 |" in text
  assert "| 10 (`tgt_random`) | 72.0 | ≈ 63 | ≈ 29 |" in text    # 10^1.8 and 10^(1+7/15)
  assert "| `SVC, RBF (pixels)` | none | — | 55.0 ± 1.4 |" in text
  for name in ("table.md", "results.csv", "results.json", "plot.png"):
    assert os.path.getsize(tmp_path / name) > 0
  assert len(json.loads((tmp_path / "results.json").read_text())["runs"]) == len(rows)


def test_unknown_cell_or_method_is_refused_by_name(capsys):
  with pytest.raises(SystemExit):
    fashion_mnist.parse_args(["--cells", "k7"])
  assert "unknown ['k7']" in capsys.readouterr().err
  with pytest.raises(SystemExit):
    fashion_mnist.parse_args(["--methods", "tgt_magic"])
  assert "unknown ['tgt_magic']" in capsys.readouterr().err


@pytest.mark.skipif(not os.path.isdir(tfds_fashion_mnist.DEBIAN_DIR),
                    reason="apt-get install dataset-fashion-mnist")
@pytest.mark.slow      # ~4 min on 2 cores: reads all 70,000 images, trains a runlocal teacher
def test_smoke_runs_every_part_and_resumes(tmp_path, tmp_path_factory):
  fashion_data_dir = str(tmp_path_factory.getbasetemp() / "fashion_mnist_tfds")
  if not tfds_fashion_mnist.is_prepared(fashion_data_dir):     # shared with tests/e2e
    tfds_fashion_mnist.prepare(fashion_data_dir)
  out = str(tmp_path / "out")
  argv = ["--smoke", "--out", out, "--data_dir", fashion_data_dir]
  fashion_mnist.main(argv)
  runs = [json.loads(line) for line in open(os.path.join(out, "runs.jsonl"), encoding="utf-8")]
  arms = {r["arm"] for r in runs}
  assert {f"{P}ce", f"{P}tgt_random", "svc", "logistic_regression", "labeler", "synthesize",
          "tgt_random_cached_2"} <= arms
  fashion_mnist.main(argv)           # everything comes back from runs.jsonl
  again = [json.loads(line) for line in open(os.path.join(out, "runs.jsonl"), encoding="utf-8")]
  assert len(again) == len(runs)
