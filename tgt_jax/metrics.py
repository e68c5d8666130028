"""Metrics for people: JSON lines + TensorBoard on process 0, a progress line, image grids,
text samples and a one-line summary of a results.json."""

import json
import math
import time

import jax
import numpy as np
from etils import epath

MIN_CELL = 32        # smallest side, in screen pixels, of one grid cell in a written image
MAX_SIDE = 8192      # ...unless that would make the image larger than this

# What the progress line shows, in this order, when present (every term still goes to
# metrics.jsonl and TensorBoard): the loss, accuracy, the distillation terms and the probe's
# discrepancy after exploration — the figures that say whether a run is healthy.
KEY_TERMS = ("total", "loss", "ce", "accuracy", "kd_real", "kd_synthetic",
             "discrepancy_after_exploration", "recon_nll", "kl_nats", "token_accuracy",
             "masked_accuracy")

# results.json figures that summary_line puts first, whichever exist (student, retrieval,
# retrieval teacher, teacher and pretrain jobs).
HEADLINE = ("test_accuracy", "recall@1", "recall@10", "mrr", "labeler_test_accuracy",
            "labeler_accuracy_on_reconstructions", "validation_masked_accuracy")


class Grid(np.ndarray):
  """A float image from image_grid that also knows the size of one cell, (h, w) pixels, so
  MetricWriter.image can upscale it; arrays derived from it (slices, arithmetic) forget it."""
  cell = None


def upscale_factor(cell, min_cell=MIN_CELL):
  """The smallest integer factor that makes both sides of a `cell`-sized patch >= min_cell."""
  return max(1, math.ceil(min_cell / max(1, min(cell))))


def upscale(image, factor):
  """Nearest neighbour: every pixel becomes a factor×factor block (exact, no smoothing)."""
  return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


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

  def image(self, step, name, grid, cell=None, min_cell=MIN_CELL):
    """`grid` in [0, 1], HxW or HxWxC: a PNG in the workdir and an image in TensorBoard.

    8×8 digits are unreadable at 8 screen pixels, so the image is upscaled by an integer
    factor, nearest neighbour (separators scale with it), until one cell — `cell`, else the
    cell size image_grid recorded, else the whole image — is at least `min_cell` pixels a side.
    Both outputs get the same uint8 pixels.
    """
    if not self.enabled:
      return
    pixels = self.pixels(grid, cell, min_cell)
    png = self._tf.io.encode_png(pixels).numpy()
    (self._workdir / f"{name}_{int(step):07d}.png").write_bytes(png)
    with self._tb.as_default():
      self._tf.summary.image(name, pixels[None], step=step)

  @staticmethod
  def pixels(grid, cell=None, min_cell=MIN_CELL):
    """The uint8 HxWxC image that `image` writes."""
    cell = cell or getattr(grid, "cell", None)
    grid = np.asarray(grid, np.float32)
    if grid.ndim == 2:
      grid = grid[..., None]
    if grid.ndim != 3 or grid.shape[-1] not in (1, 3, 4):
      raise ValueError(f"An image must be HxW or HxWxC with C in (1, 3, 4); got shape "
                       f"{grid.shape}.")
    factor = upscale_factor(cell or grid.shape[:2], min_cell)
    factor = max(1, min(factor, MAX_SIDE // max(grid.shape[:2])))
    return upscale(np.clip(grid * 255.0 + 0.5, 0, 255).astype(np.uint8), factor)

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


def duration(seconds):
  """H:MM:SS (with a day count past 24 h); '?' when unknown."""
  if seconds is None or not np.isfinite(seconds):
    return "?"
  days, rest = divmod(int(round(seconds)), 86400)
  clock = time.strftime("%H:%M:%S", time.gmtime(rest))
  return f"{days}d {clock}" if days else clock


def format_progress(step, total, timing, scalars, key_terms=None):
  """One log line: step, steps/s, ETA and the `key_terms` (default KEY_TERMS) present in
  `scalars`; if none is, the first few by name. The count of terms left out follows."""
  key_terms = KEY_TERMS if key_terms is None else key_terms
  shown = [k for k in key_terms if k in scalars] or sorted(scalars)[:4]
  terms = " ".join(f"{k}={scalars[k]:.4g}" for k in shown)
  hidden = len(scalars) - len(shown)
  terms += f" (+{hidden} more in metrics.jsonl)" if hidden else ""
  line = (f"step {step}/{total} | {timing['steps_per_sec']:.1f} steps/s | "
          f"ETA {duration(timing['eta_sec'])}")
  return f"{line} | {terms}" if terms else line


def _figure(value):
  try:
    return f"{float(value):.4f}"
  except (TypeError, ValueError):
    return str(value)


def summary_line(results):
  """One line for a person from a results.json payload of any job: what ran, its headline
  figures, how many steps and how long, e.g.
  'student kd | digits 5_per_class, mlp, seed 0 | test_accuracy=0.8123 … | step 500/500 | 0:01:23'.
  """
  job = results.get("job") or ("student" if "method" in results else "job?")
  parts = [" ".join(str(p) for p in (job, results.get("method")) if p)]
  data = results.get("data") or {}
  what = [" ".join(str(data[k]) for k in ("name", "subset") if data.get(k))]
  if results.get("num_pairs"):
    what.append(f"{results['num_pairs']} pairs")
  what.append(results.get("student_model") or results.get("model") or "")
  if results.get("seed") is not None:
    what.append(f"seed {results['seed']}")
  what = ", ".join(w for w in what if w)
  if what:
    parts.append(what)

  figures = [(k, results[k]) for k in HEADLINE if k in results]
  test = results.get("test") if isinstance(results.get("test"), dict) else {}
  if "test_accuracy" in results and "macro_f1" in test:
    figures.append(("macro_f1", test["macro_f1"]))
  if str(data.get("subset", "")).startswith("long_tail"):   # groups mean something only here
    figures += [(k, test[k]) for k in ("head_accuracy", "medium_accuracy", "tail_accuracy")
                if k in test]
  if figures:
    parts.append(" ".join(f"{k}={_figure(v)}" for k, v in figures))

  step, total = results.get("checkpoint_step"), results.get("num_train_steps")
  if results.get("eval_only") and step is not None:
    parts.append(f"eval_only at step {step}")
  elif step is not None:
    parts.append(f"step {step}/{total}" if total is not None else f"step {step}")
  elif results.get("steps") is not None:
    parts.append(f"{results['steps']} steps")
  if results.get("wall_time_sec") is not None:
    parts.append(duration(results["wall_time_sec"]))
  return " | ".join(parts)


def image_grid(rows, pad=1):
  """rows: list of [N, H, W, C] arrays in [0, 1] → one Grid image, a row per array, cells
  separated by `pad` white pixels."""
  rows = [np.asarray(r, np.float32) for r in rows]
  n, h, w, c = rows[0].shape
  for i, row in enumerate(rows):
    if row.shape[1:] != (h, w, c) or len(row) > n:
      raise ValueError(f"image_grid: row {i} has shape {row.shape}; every row needs at most "
                       f"{n} images of shape {(h, w, c)} (the first row's).")
  grid = np.ones((len(rows) * (h + pad) + pad, n * (w + pad) + pad, c), np.float32).view(Grid)
  grid.cell = (h, w)
  for i, row in enumerate(rows):
    for j in range(len(row)):
      y, x = pad + i * (h + pad), pad + j * (w + pad)
      grid[y:y + h, x:x + w] = row[j]
  return grid
