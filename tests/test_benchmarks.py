"""The step-cost benchmark runs end to end in its smallest setting and its numbers make sense."""

import json
import math

from benchmarks import step_cost


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
  printed = capsys.readouterr().out
  assert "device:" in printed and "jax " in printed and "tgt_gradient" in printed
  assert [r["method"] for r in json.loads(out.read_text())["rows"]] == ["ce", "kd", "tgt_gradient"]
