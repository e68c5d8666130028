"""metrics.py: JSONL + TensorBoard + PNG on process 0, progress and grids."""

import json

import numpy as np

from tgt_jax import metrics


def test_writer_writes_jsonl_tensorboard_and_png(tmp_path):
  writer = metrics.MetricWriter(str(tmp_path))
  writer.scalars(5, {"train/loss": np.float32(1.5), "steps_per_sec": 3})
  writer.image(5, "grid", np.random.default_rng(0).uniform(size=(10, 12, 1)))
  writer.close()
  rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert rows == [{"step": 5, "train/loss": 1.5, "steps_per_sec": 3.0}]
  assert (tmp_path / "grid_0000005.png").read_bytes()[:4] == b"\x89PNG"
  assert list((tmp_path / "tensorboard").iterdir())


def test_disabled_writer_writes_nothing(tmp_path):
  writer = metrics.MetricWriter(str(tmp_path / "w"), enabled=False)
  writer.scalars(1, {"a": 1.0})
  writer.close()
  assert not (tmp_path / "w").exists()


def test_image_grid_layout():
  rows = [np.zeros((4, 8, 8, 1)), np.ones((4, 8, 8, 1))]
  grid = metrics.image_grid(rows, pad=1)
  assert grid.shape == (2 * 9 + 1, 4 * 9 + 1, 1)
  assert grid[1:9, 1:9].max() == 0.0 and grid[10:18, 1:9].min() == 1.0


def test_progress_rate_eta_and_line():
  progress = metrics.Progress(total_steps=100, first_step=0)
  progress._last_time -= 2.0                       # pretend 2 s went by
  timing = progress.update(10)
  assert 4.0 < timing["steps_per_sec"] <= 5.0
  assert 17.0 < timing["eta_sec"] <= 18.5           # 90 steps at ~5 steps/s
  line = metrics.format_progress(10, 100, timing, {"ce": 0.5})
  assert "step 10/100" in line and "steps/s" in line and "ETA 00:00:1" in line and "ce=0.5" in line
