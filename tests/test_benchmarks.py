"""Every benchmark runs end to end in its smallest setting (the text one in the slow set)."""

import csv
import json
import math

import pytest

from benchmarks import (imagenet_step, retrieval, sample_efficiency, se_report, seeds, step_cost,
                        text_classification)


def test_step_cost_smallest_setting(tmp_path, capsys):
  out = tmp_path / "step_cost.json"
  rows = step_cost.main(["--steps=2", "--warmup=1", "--batch_size=8",
                         "--methods=ce,kd,tgt_gradient", f"--json_out={out}"])
  assert [r["method"] for r in rows] == ["ce", "kd", "tgt_gradient"]
  for r in rows:
    for key in ("ms_per_step", "examples_per_s", "flops", "time_per_flop_vs_kd"):
      assert math.isfinite(r[key]) and r[key] > 0, (r["method"], key, r[key])
    assert 0.0 <= r["input_wait_fraction"] < 1.0
  flops = {r["method"]: r["flops"] for r in rows}
  # The teacher's passes cost FLOPs: T(x) for kd; E, G, T and an ascent step for tgt_gradient.
  assert flops["tgt_gradient"] > flops["kd"] > flops["ce"]
  passes = {r["method"]: r["teacher_forward_passes_per_example"] for r in rows}
  assert passes == {"ce": 0, "kd": 1, "tgt_gradient": 6}   # m = k = 1: 2 + 2m(k + 1)
  assert step_cost.teacher_passes(step_cost.tgt.TGTConfig(method="kd_mixup"))["forward"] == 2
  printed = capsys.readouterr().out
  assert "device:" in printed and "jax " in printed and "tgt_gradient" in printed
  assert [r["method"] for r in json.loads(out.read_text())["rows"]] == ["ce", "kd", "tgt_gradient"]


@pytest.mark.slow      # 28 s with its arms' teacher
def test_sample_efficiency_smoke_writes_table_csv_json_plot(tmp_path, tiny_teacher_dir, capsys):
  out = tmp_path / "se"
  rows = sample_efficiency.main(["--smoke", f"--out={out}", f"--teacher_dir={tiny_teacher_dir}",
                                 "--methods=ce,kd_transfer,tgt_random"])
  arms = {r["arm"] for r in rows}
  assert arms == {"pretrained/cnn_small/ce", "pretrained/cnn_small/kd_transfer",
                  "pretrained/cnn_small/tgt_random", "same_labels/cnn_small/tgt_random", "svc",
                  "same_labels/labeler"}     # the same-labels teacher's labeler, scored alone
  for r in rows:
    assert 0.0 <= r["test"]["balanced_accuracy"] <= 1.0 and r["cell"] == "k5" and r["seed"] == 0
  summary = json.loads((out / "results.json").read_text())
  assert {s["arm"] for s in summary["summary"]} == arms
  assert summary["chosen_augment"]["pretrained/cnn_small/ce"] in sample_efficiency.AUGMENTATIONS
  with open(out / "results.csv", newline="") as f:
    assert {row["arm"] for row in csv.DictReader(f)} == arms
  assert (out / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  table = (out / "table.md").read_text()
  assert "| `tgt_random` |" in table and "svc (reference peer)" in table
  assert "the same-labels labeler itself" in table
  assert table.strip() in capsys.readouterr().out
  # A rerun with the same settings resumes from runs.jsonl instead of training again.
  again = sample_efficiency.main(["--smoke", f"--out={out}", f"--teacher_dir={tiny_teacher_dir}",
                                  "--methods=ce,kd_transfer,tgt_random"])
  assert [r["test"] for r in again] == [r["test"] for r in rows]


def test_sample_efficiency_rejects_unknown_cell_and_method(capsys):
  for flag, name in (("--cells=k7", "k7"), ("--methods=magic", "magic")):
    try:
      sample_efficiency.parse_args([flag])
    except SystemExit:
      assert name in capsys.readouterr().err
    else:
      raise AssertionError(f"{flag} was accepted")


def test_targets_are_reported_not_asserted():
  entry = lambda m, tail=0.0: {"mean": m, "std": 0.0, "n": 5, "seconds": 1.0, "augment": "none",
                               "head": m, "medium": m, "tail": tail}
  p = "pretrained/cnn_small/"
  summary = {(p + "tgt_random", "k5"): entry(97.0), (p + "kd", "k5"): entry(86.0),
             (p + "kd_transfer", "k5"): entry(98.0), (p + "ce", "lt50"): entry(80, tail=60),
             (p + "tgt_random", "lt50"): entry(90, tail=75)}
  checks = dict(se_report.targets(summary))
  assert checks["best TGT (`tgt_random`) at 5 labels/class: 97.0% (target ≥ 96%)"]
  assert checks["best TGT − KD at 5/class: +11.0 points (target ≥ +5)"]
  assert checks["best TGT − kd_transfer ceiling at 5/class: -1.0 points (target within 2)"]
  assert checks["long tail ρ=50: tail-class accuracy of `tgt_random` − CE: +15.0 points "
                "(target ≥ +10)"]


@pytest.mark.slow   # ~1 min; its jobs run by default in e2e/ (text teacher, pretraining)
def test_text_classification_smoke_writes_table_and_resumes(tmp_path, capsys):
  argv = ["--smoke", f"--work={tmp_path / 'work'}", f"--out={tmp_path / 'out'}"]
  summary = text_classification.main(argv)
  assert set(summary) == {"ce", "tgt_random"}
  for entry in summary.values():
    assert entry["seeds"] == 1 and 0.0 <= entry["macro_f1"][0] <= 100.0
  table = (tmp_path / "out" / "table.md").read_text()
  assert "| tgt_random | text_transformer |" in table and "Teacher: " in table
  assert (tmp_path / "work" / "teacher" / "samples.txt").exists()
  capsys.readouterr()
  text_classification.main(argv)                       # cached: nothing is trained again
  assert "(0 trained now)" in capsys.readouterr().out


def test_seed_summaries():
  rows = [{"arm": "a", "seed": 0, "x": 1.0}, {"arm": "b", "seed": 0, "x": 5.0},
          {"arm": "a", "seed": 1, "x": 3.0}]
  groups = seeds.group_by(rows, "arm")
  assert list(groups) == [("a",), ("b",)] and [r["seed"] for r in groups[("a",)]] == [0, 1]
  assert seeds.mean_std([1.0, 3.0]) == (2.0, pytest.approx(2 ** 0.5))
  assert seeds.mean_std([5.0]) == (5.0, 0.0)


@pytest.mark.slow      # 50 s: four methods' steps through the tiny AutoencoderKL and BiT
def test_imagenet_step_by_part_at_its_smallest_size(tmp_path):
  """--preset=imagenet at size tiny: the parts sum to the step."""
  out = tmp_path / "imagenet.json"
  results = imagenet_step.main(["--preset=imagenet", "--size=tiny", "--batch_size=8", "--steps=1",
                            "--teacher_dtypes=float32", f"--json_out={out}",
                            "--methods=kd,tgt_random,tgt_random_cached,tgt_gradient"])
  rows = {r["method"]: r for r in results[0]["rows"]}
  parts = results[0]["parts_gflops_per_example"]
  assert set(parts) == {"student_fwd_bwd", "E", "G", "T"} and min(parts.values()) > 0
  random, cached = rows["tgt_random"], rows["tgt_random_cached"]
  # tgt_random's step holds one E, one G and two T passes; the cached step none of E and G.
  split = random["gflops_by_part_per_example"]
  assert split["E"] == parts["E"] and split["G"] == parts["G"] and split["T"] == 2 * parts["T"]
  assert cached["gflops_per_example"] < random["gflops_per_example"] - parts["G"] / 2
  assert rows["tgt_gradient"]["gflops_by_part_per_example"]["rest"] > parts["G"]   # G's backward
  assert 0 < random["student_share"] < rows["kd"]["student_share"] < 1
  assert rows["kd"]["time_per_flop_vs_kd"] == 1.0
  assert json.loads(out.read_text())["results"][0]["teacher_dtype"] == "float32"


@pytest.mark.slow      # 53 s of the default run on 2 cores; device.py is also exercised on a device
def test_device_benchmark_at_its_smallest_size(tmp_path, capsys):
  from benchmarks import device      # pylint: disable=g-import-not-at-top
  out = tmp_path / "device.json"
  result = device.main(["--size=tiny", "--batch_size=8", "--matmul_size=128", "--steps=1",
                        "--methods=kd", f"--json_out={out}"])
  assert [row["method"] for row in result["rows"]] == ["kd"]
  assert result["matmul_bf16_flops_per_s"] > 0 and result["skipped"] == []
  for row in result["rows"]:
    assert row["images_per_s"] > 0 and 0 < row["mfu"] and math.isfinite(row["mfu"])
  assert "images/s" in capsys.readouterr().out
  skipped = device.main(["--size=tiny", "--batch_size=8", "--matmul_size=64", "--steps=1",
                         "--methods=kd", "--budget_s=0"])
  assert skipped["rows"] == [] and skipped["skipped"] == ["kd"]


@pytest.mark.slow      # 30 s: seven digits jobs
def test_synthesis_cache_smoke(tmp_path, tiny_teacher_dir):
  from benchmarks import synthesis_cache      # pylint: disable=g-import-not-at-top
  summary = synthesis_cache.main(["--smoke", f"--out={tmp_path}",
                                  f"--teacher_dir={tiny_teacher_dir}"])
  arms = {s["arm"]: s for s in summary}
  assert set(arms) == {"synthesize", "cached_1", "cached_4", "online", "online_bf16", "kd"}
  for arm in ("cached_1", "cached_4", "online", "online_bf16", "kd"):
    assert 0.0 <= arms[arm]["test_accuracy_mean"] <= 1.0
  assert "| cached_4 | 1 |" in (tmp_path / "table.md").read_text()
  again = synthesis_cache.main(["--smoke", f"--out={tmp_path}",
                                f"--teacher_dir={tiny_teacher_dir}"])     # resumes: no reruns
  accuracies = lambda rows: [s["test_accuracy_mean"] for s in rows if s["arm"] != "synthesize"]
  assert accuracies(again) == accuracies(summary)


def test_retrieval_targets_name_the_value_and_the_verdict():
  """The retrieval targets are computed from the summary, met or missed, never asserted."""
  args = retrieval.parse_args(["--num_pairs=2500,10000"])
  summary = {("kd", 2500): {"recall@10": (1.0, 0.1)}, ("kd_transfer", 2500): {"recall@10": (4.5, 0)},
             ("tgt_random", 2500): {"recall@10": (4.2, 0.2)},
             ("tgt_prior", 2500): {"recall@10": (3.0, 0.1)},
             ("tgt_random", 10000): {"recall@10": (9.0, 0.1)}}
  teacher = {"report": {"test": {"recall@10": 0.125}}}
  lines = retrieval.targets(summary, teacher, args)
  assert lines[0] == "- Teacher test recall@10 ≥ 12%: 12.50% — met."
  assert lines[1] == ("- Best TGT (`tgt_random`, 4.20) ≥ `kd` (1.00) + 3 points at 2500 pairs: "
                      "+3.20 points — met.")
  assert lines[2] == "- Best TGT ≥ `kd_transfer` (4.50) at 2500 pairs: -0.30 points — missed."
  assert retrieval.targets({}, {"report": {"test": {"recall@10": 0.05}}}, args) == [
      "- Teacher test recall@10 ≥ 12%: 5.00% — missed."]
