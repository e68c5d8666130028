"""metrics.py: JSONL + TensorBoard + PNG on process 0, upscaled grids, progress and summaries."""

import json

import numpy as np
import pytest

from tgt_jax import metrics


def _tensorboard_images(directory):
  """{tag: [uint8 HxWxC, ...]} decoded from the event files under `directory`."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  out = {}
  for path in sorted(directory.rglob("events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(str(path)):
      for value in event.summary.value:
        if value.metadata.plugin_data.plugin_name == "images":
          png = tf.make_ndarray(value.tensor)[2]       # [width, height, png, ...]
          out.setdefault(value.tag, []).append(tf.io.decode_png(png).numpy())
  return out


def _png(path):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.io.decode_png(path.read_bytes()).numpy()


def test_writer_writes_jsonl_tensorboard_and_png(tmp_path):
  writer = metrics.MetricWriter(str(tmp_path))
  writer.scalars(5, {"train/loss": np.float32(1.5), "steps_per_sec": 3})
  writer.image(5, "grid", np.random.default_rng(0).uniform(size=(10, 12, 1)))
  writer.close()
  rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert rows == [{"step": 5, "train/loss": 1.5, "steps_per_sec": 3.0}]
  assert (tmp_path / "grid_0000005.png").read_bytes()[:4] == b"\x89PNG"
  assert list((tmp_path / "tensorboard").iterdir())
  # a plain 10×12 image is one cell: upscaled ×4 so its short side reaches 32
  assert _png(tmp_path / "grid_0000005.png").shape == (40, 48, 1)


def test_disabled_writer_writes_nothing(tmp_path):
  writer = metrics.MetricWriter(str(tmp_path / "w"), enabled=False)
  writer.scalars(1, {"a": 1.0})
  writer.image(1, "grid", np.zeros((8, 8)))
  writer.close()
  assert not (tmp_path / "w").exists()


def test_image_grid_layout():
  rows = [np.zeros((4, 8, 8, 1)), np.ones((4, 8, 8, 1))]
  grid = metrics.image_grid(rows, pad=1)
  assert grid.shape == (2 * 9 + 1, 4 * 9 + 1, 1) and grid.cell == (8, 8)
  assert grid[1:9, 1:9].max() == 0.0 and grid[10:18, 1:9].min() == 1.0
  assert grid[0].min() == 1.0 and grid[:, 9].min() == 1.0        # separators


def test_image_grid_rejects_rows_of_other_shapes():
  with pytest.raises(ValueError, match=r"row 1 has shape \(2, 7, 8, 1\)"):
    metrics.image_grid([np.zeros((2, 8, 8, 1)), np.zeros((2, 7, 8, 1))])


def test_upscale_factor_is_the_smallest_integer_reaching_min_cell():
  assert metrics.upscale_factor((8, 8)) == 4             # 8 → 32
  assert metrics.upscale_factor((28, 28)) == 2           # 28 → 56
  assert metrics.upscale_factor((32, 32)) == 1
  assert metrics.upscale_factor((8, 12), min_cell=20) == 3   # the short side decides: 8·3 = 24
  assert metrics.upscale_factor((64, 64)) == 1           # never shrinks


def test_two_by_two_grid_of_digits_comes_back_repeated_by_the_factor(tmp_path):
  rng = np.random.default_rng(0)
  cells = rng.integers(0, 17, size=(2, 2, 8, 8, 1)) / 16.0      # digits-like: 17 grey levels
  grid = metrics.image_grid([cells[0], cells[1]], pad=1)        # 19 × 19, cell 8 × 8
  writer = metrics.MetricWriter(str(tmp_path))
  writer.image(3, "digits", grid)
  writer.close()
  png = _png(tmp_path / "digits_0000003.png")
  (board,) = _tensorboard_images(tmp_path / "tensorboard")["digits"]
  want = np.clip(np.asarray(grid) * 255 + 0.5, 0, 255).astype(np.uint8)
  k = 4                                                         # 8 px cells → 32 px
  assert png.shape == (19 * k, 19 * k, 1)
  np.testing.assert_array_equal(png, board)                     # TensorBoard: the same pixels
  for i in range(2):
    for j in range(2):
      y, x = (1 + 9 * i) * k, (1 + 9 * j) * k
      cell = png[y:y + 8 * k, x:x + 8 * k, 0]
      np.testing.assert_array_equal(
          cell, np.kron(want[1 + 9 * i:9 + 9 * i, 1 + 9 * j:9 + 9 * j, 0],
                        np.ones((k, k), np.uint8)))             # each pixel a k×k block
      assert len(np.unique(cell)) == len(np.unique(want[1 + 9 * i:9 + 9 * i,
                                                        1 + 9 * j:9 + 9 * j]))  # no new shades
  # separators: k pixels of white around and between the cells
  for line in (slice(0, k), slice(9 * k, 10 * k), slice(18 * k, 19 * k)):
    assert png[line].min() == 255 and png[:, line].min() == 255


def test_explicit_cell_and_min_cell_and_rgb(tmp_path):
  image = np.random.default_rng(1).uniform(size=(6, 10, 3))
  pixels = metrics.MetricWriter.pixels(image, cell=(2, 5), min_cell=10)   # factor ceil(10/2) = 5
  assert pixels.shape == (30, 50, 3) and pixels.dtype == np.uint8
  np.testing.assert_array_equal(pixels[::5, ::5], np.clip(image * 255 + 0.5, 0, 255).astype(
      np.uint8))
  derived = metrics.image_grid([np.zeros((1, 8, 8, 1))])[1:9, 1:9]   # a slice: cell forgotten
  assert metrics.MetricWriter.pixels(derived).shape == (32, 32, 1)      # whole image: 8 → 32
  with pytest.raises(ValueError, match=r"got shape \(4, 4, 2\)"):
    metrics.MetricWriter.pixels(np.zeros((4, 4, 2)))


def test_progress_rate_eta_and_line():
  progress = metrics.Progress(total_steps=100, first_step=0)
  progress._last_time -= 2.0                       # pretend 2 s went by
  timing = progress.update(10)
  assert 4.0 < timing["steps_per_sec"] <= 5.0
  assert 17.0 < timing["eta_sec"] <= 18.5           # 90 steps at ~5 steps/s
  line = metrics.format_progress(10, 100, timing, {"ce": 0.5})
  assert "step 10/100" in line and "steps/s" in line and "ETA 00:00:1" in line and "ce=0.5" in line


def test_progress_line_shows_key_terms_only_in_priority_order():
  timing = {"steps_per_sec": 12.34, "eta_sec": 3725.0}
  scalars = {"grad_norm": 3.0, "kd_synthetic": 0.25, "ce": 1.5, "total": 2.0, "kd_real": 0.5,
             "discrepancy_before_exploration": 0.1, "discrepancy_after_exploration": 0.4,
             "teacher_entropy_real": 0.7, "teacher_entropy_synthetic": 0.8,
             "teacher_confidence_synthetic": 0.9}
  line = metrics.format_progress(200, 1000, timing, scalars)
  assert line == ("step 200/1000 | 12.3 steps/s | ETA 01:02:05 | total=2 ce=1.5 kd_real=0.5 "
                  "kd_synthetic=0.25 discrepancy_after_exploration=0.4 (+5 more in metrics.jsonl)")
  mine = metrics.format_progress(200, 1000, timing, scalars, key_terms=("grad_norm", "absent"))
  assert mine.endswith("| grad_norm=3 (+9 more in metrics.jsonl)")
  # no key term at all: the first few by name, so the line is never empty
  other = metrics.format_progress(1, 2, timing, {"e": 5, "d": 4, "c": 3, "b": 2, "a": 1})
  assert other.endswith("| a=1 b=2 c=3 d=4 (+1 more in metrics.jsonl)")
  assert metrics.format_progress(1, 2, {"steps_per_sec": 0.0, "eta_sec": float("inf")},
                                 {}) == "step 1/2 | 0.0 steps/s | ETA ?"


def test_duration():
  assert metrics.duration(0) == "00:00:00"
  assert metrics.duration(83.4) == "00:01:23"
  assert metrics.duration(90061) == "1d 01:01:01"         # no wrap past a day
  assert metrics.duration(float("nan")) == metrics.duration(None) == "?"


# results.json payloads with the keys each job writes (tasks/classification.py, tasks/retrieval.py, tasks/pretrain.py)
STUDENT = {
    "job": "student", "eval_only": False, "checkpoint_step": 500, "method": "tgt_random", "seed": 0,
    "student_model": "mlp",
    "data": {"name": "digits", "subset": "long_tail_10", "labels_per_class": 0, "imbalance": 10.0,
             "class_counts": [50, 5], "num_labelled": 55, "class_groups": {}},
    "test": {"accuracy": 0.81, "balanced_accuracy": 0.8125, "macro_f1": 0.80004,
             "per_class_accuracy": [0.9, 0.7], "head_accuracy": 0.9, "medium_accuracy": float("nan"),
             "tail_accuracy": 0.7},
    "validation": {"balanced_accuracy": 0.8},
    "test_accuracy": 0.8125, "num_train_steps": 500, "batch_size": 64, "tgt": {},
    "teacher_dir": "/w/teacher", "teacher_report": {"labeler_test_accuracy": 0.97},
    "num_devices": 8, "num_processes": 1, "wall_time_sec": 83.4}
TEACHER = {"job": "teacher", "teacher_dir": "/w/t", "seed": 1, "wall_time_sec": 12.0,
           "labeler_test_accuracy": 0.9712, "labeler_accuracy_on_reconstructions": 0.9,
           "reconstruction_mse": 0.01, "latent_kl_nats": 20.0, "label_kept_at_sigma_0.5": 0.9}
PRETRAIN = {"job": "pretrain", "pretrained_dir": "/w/p", "seed": 0, "wall_time_sec": 4000.0,
            "model": "transformer", "vocab_size": 100, "vocabulary_fingerprint": "ab",
            "steps": 200, "mask_rate": 0.15, "validation_masked_accuracy": 0.25}
RETRIEVAL = {"job": "retrieval", "eval_only": True, "checkpoint_step": 300, "method": "kd",
             "seed": 2, "num_pairs": 2500, "student_model": "bow",
             "test": {"recall@1": 0.01, "recall@10": 0.048, "mrr": 0.02},
             "recall@1": 0.01, "recall@10": 0.048, "mrr": 0.02, "num_train_steps": 300,
             "wall_time_sec": 7.0}
RETRIEVAL_TEACHER = {"job": "retrieval_teacher", "retrieval_teacher_dir": "/w/r",
                     "model": "bow", "seed": 0, "test": {}, "recall@1": 0.02,
                     "recall@10": 0.05, "mrr": 0.03, "num_train_pairs": 9000,
                     "num_documents": 100, "wall_time_sec": 30.0}


@pytest.mark.parametrize("payload,want", [
    (STUDENT, "student tgt_random | digits long_tail_10, mlp, seed 0 | test_accuracy=0.8125 "
              "macro_f1=0.8000 head_accuracy=0.9000 medium_accuracy=nan tail_accuracy=0.7000 | "
              "step 500/500 | 00:01:23"),
    (TEACHER, "teacher | seed 1 | labeler_test_accuracy=0.9712 "
              "labeler_accuracy_on_reconstructions=0.9000 | 00:00:12"),
    (PRETRAIN, "pretrain | transformer, seed 0 | validation_masked_accuracy=0.2500 | 200 steps | "
               "01:06:40"),
    (RETRIEVAL, "retrieval kd | 2500 pairs, bow, seed 2 | recall@1=0.0100 recall@10=0.0480 "
                "mrr=0.0200 | eval_only at step 300 | 00:00:07"),
    (RETRIEVAL_TEACHER, "retrieval_teacher | bow, seed 0 | recall@1=0.0200 recall@10=0.0500 "
                        "mrr=0.0300 | 00:00:30"),
])
def test_summary_line_of_each_job(payload, want):
  assert metrics.summary_line(payload) == want
  assert metrics.summary_line(json.loads(json.dumps(payload))) == want   # as read from disk


def test_summary_line_balanced_subset_and_sparse_payloads():
  balanced = {**STUDENT, "data": {**STUDENT["data"], "subset": "5_per_class"}}
  line = metrics.summary_line(balanced)
  assert "test_accuracy=0.8125 macro_f1=0.8000 |" in line and "tail" not in line
  no_job = {k: v for k, v in STUDENT.items() if k != "job"}      # results.json of older runs
  assert metrics.summary_line(no_job) == metrics.summary_line(STUDENT)
  assert metrics.summary_line({}) == "job?"
  assert metrics.summary_line({"job": "teacher", "labeler_test_accuracy": None}) == (
      "teacher | labeler_test_accuracy=None")
