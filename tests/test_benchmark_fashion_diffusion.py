"""benchmarks/fashion_diffusion.py: the report's arithmetic on made-up rows (cheap), the whole
comparison at its smoke size on the real data with runlocal teachers (slow)."""

import json
import os

import pytest

from benchmarks import fashion_diffusion
from tgt_jax import configlib, jobs
from tgt_jax.data import tfds_fashion_mnist

CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "fashion_mnist.py")


def _rows(accuracies, cell="k10"):
  """{(teacher, method, seed): accuracy %} → student rows, plus one synthesis row per cache."""
  rows = []
  for (teacher, method, seed), acc in accuracies.items():
    report = {"balanced_accuracy": acc / 100, "head_accuracy": acc / 100,
              "medium_accuracy": acc / 100, "tail_accuracy": acc / 100}
    rows.append({"arm": f"{teacher}/{method}", "augment": "flip_shift", "cell": cell,
                 "seed": seed, "seconds": 30.0, "test": report, "validation": report})
    rows.append({"arm": f"synthesize/{teacher}/{method}", "augment": "none", "cell": cell,
                 "seed": seed, "seconds": 2.0 if teacher == "vae" else 20.0,
                 "num_records": 1000})
  return rows


def test_report_pairs_seeds_and_gives_the_cost_per_sample(tmp_path):
  args = fashion_diffusion.parse_args(["--teacher_dir=t", "--diffusion_dir=d", "--seeds=2",
                                       f"--out={tmp_path}", "--cells=k10"])
  accuracies = {("vae", "tgt_random", 0): 80.0, ("vae", "tgt_random", 1): 82.0,
                ("diffusion", "tgt_random", 0): 83.0, ("diffusion", "tgt_random", 1): 86.0,
                ("vae", "tgt_prior", 0): 70.0, ("vae", "tgt_prior", 1): 70.0,
                ("diffusion", "tgt_prior", 0): 75.0, ("diffusion", "tgt_prior", 1): 75.0}
  header = {"command": "c", "device": "cpu", "cpu_count": 2, "jax": "x", "steps": 3,
            "batch_size": 64, "seeds": [0, 1], "wall_time_sec": 60.0, "runs_trained_now": 16,
            "runs_from_cache": 0, "run_seconds_total": 0.0, "dit_gflops": 0.0413}
  text = fashion_diffusion.report(args, header, _rows(accuracies))
  assert "| diffusion | `tgt_random` | 84.5 ± 2.1 | 20.00 |" in text
  assert "| vae | `tgt_prior` | 70.0 ± 0.0 | 2.00 |" in text
  assert "diffusion − VAE, `tgt_random` k10: +3.5 ± 0.7 points (paired over 2 seeds)" in text
  assert "diffusion − VAE, `tgt_prior` k10: +5.0 ± 0.0 points" in text
  saved = json.loads((tmp_path / "results.json").read_text())
  assert {(s["arm"], s["cell"]) for s in saved["summary"]} == {
      (f"{t}/{m}", "k10") for t in ("vae", "diffusion") for m in ("tgt_random", "tgt_prior")}


def test_an_unknown_cell_is_refused_by_name(capsys):
  with pytest.raises(SystemExit):
    fashion_diffusion.parse_args(["--teacher_dir=t", "--diffusion_dir=d", "--cells=k5"])
  assert "--cells: choose from ['k10', 'lt100'], got ['k5']" in capsys.readouterr().err


@pytest.mark.slow     # the runlocal VAE teacher, its DiT, then 4 caches and 4 students
@pytest.mark.skipif(not os.path.isdir(tfds_fashion_mnist.DEBIAN_DIR),
                    reason="apt-get install dataset-fashion-mnist")
def test_smoke_runs_both_teachers_through_the_cache_and_resumes(tmp_path, tmp_path_factory):
  data_dir = str(tmp_path_factory.getbasetemp() / "fashion_mnist_tfds")
  if not tfds_fashion_mnist.is_prepared(data_dir):
    tfds_fashion_mnist.prepare(data_dir)
  work = str(tmp_path / "teachers")
  jobs.run(configlib.load(CONFIG, "runlocal,teacher=diffusion,job=diffusion",
                          **{"data.data_dir": data_dir}), work)
  argv = ["--smoke", f"--teacher_dir={work}/teacher", f"--diffusion_dir={work}/diffusion",
          f"--data_dir={data_dir}", f"--out={tmp_path / 'out'}"]
  rows = fashion_diffusion.main(argv)
  assert {r["arm"] for r in rows} == {f"{p}{t}/{m}" for p in ("", "synthesize/")
                                      for t in ("vae", "diffusion")
                                      for m in ("tgt_random", "tgt_prior")}
  table = (tmp_path / "out" / "table.md").read_text()
  assert "diffusion − VAE, `tgt_prior` k10" in table
  again = fashion_diffusion.main(argv)          # every run is read back from runs.jsonl
  assert [r["test"] for r in again if "test" in r] == [r["test"] for r in rows if "test" in r]
