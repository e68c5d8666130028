"""Metrics for people: JSON lines + TensorBoard on process 0, a progress line, image grids
and text samples."""

import json
import time

import jax
import numpy as np
from etils import epath


class MetricWriter:
  """Writes scalars to `metrics.jsonl` and TensorBoard; does nothing on other processes."""

  def __init__(self, workdir, enabled=None):
    self.enabled = jax.process_index() == 0 if enabled is None else enabled
    self._workdir = epath.Path(workdir)
    self._tb = None
    if self.enabled:
      self._workdir.mkdir(parents=True, exist_ok=True)
      self._jsonl = (self._workdir / "metrics.jsonl").open("a")
      import tensorflow as tf  # pylint: disable=g-import-not-at-top
      self._tf = tf
      self._tb = tf.summary.create_file_writer(str(self._workdir / "tensorboard"))

  def scalars(self, step, values):
    if not self.enabled:
      return
    values = {k: float(v) for k, v in values.items()}
    self._jsonl.write(json.dumps({"step": int(step), **values}) + "\n")
    self._jsonl.flush()
    with self._tb.as_default():
      for name, value in values.items():
        self._tf.summary.scalar(name, value, step=step)

  def image(self, step, name, grid):
    """`grid` in [0, 1], HxW or HxWxC: a PNG in the workdir and an image in TensorBoard."""
    if not self.enabled:
      return
    grid = np.asarray(grid, np.float32)
    if grid.ndim == 2:
      grid = grid[..., None]
    png = self._tf.io.encode_png(np.clip(grid * 255.0 + 0.5, 0, 255).astype(np.uint8)).numpy()
    (self._workdir / f"{name}_{int(step):07d}.png").write_bytes(png)
    with self._tb.as_default():
      self._tf.summary.image(name, grid[None], step=step)

  def text(self, step, name, text):
    """A text file `{name}_{step}.txt` in the workdir and a text summary in TensorBoard."""
    if not self.enabled:
      return
    (self._workdir / f"{name}_{int(step):07d}.txt").write_text(text)
    with self._tb.as_default():
      self._tf.summary.text(name, text, step=step)

  def close(self):
    if self.enabled:
      self._jsonl.close()
      self._tb.flush()


class Progress:
  """steps/s over the last reporting window and an ETA for the remaining steps."""

  def __init__(self, total_steps, first_step=0):
    self.total_steps = total_steps
    self._last_step, self._last_time = first_step, time.perf_counter()

  def update(self, step):
    now = time.perf_counter()
    rate = (step - self._last_step) / max(now - self._last_time, 1e-9)
    self._last_step, self._last_time = step, now
    eta = (self.total_steps - step) / rate if rate > 0 else float("inf")
    return {"steps_per_sec": rate, "eta_sec": eta}


def format_progress(step, total, timing, scalars):
  eta = timing["eta_sec"]
  eta_str = time.strftime("%H:%M:%S", time.gmtime(eta)) if np.isfinite(eta) else "?"
  terms = " ".join(f"{k}={v:.4g}" for k, v in sorted(scalars.items()))
  return f"step {step}/{total} | {timing['steps_per_sec']:.1f} steps/s | ETA {eta_str} | {terms}"


def image_grid(rows, pad=1):
  """rows: list of [N, H, W, C] arrays in [0, 1] → one image, a row per array."""
  rows = [np.asarray(r, np.float32) for r in rows]
  n, h, w, c = rows[0].shape
  grid = np.ones((len(rows) * (h + pad) + pad, n * (w + pad) + pad, c), np.float32)
  for i, row in enumerate(rows):
    for j in range(n):
      y, x = pad + i * (h + pad), pad + j * (w + pad)
      grid[y:y + h, x:x + w] = row[j]
  return grid
