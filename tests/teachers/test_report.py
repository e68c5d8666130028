"""teachers/report.py: the teacher report's figures against their formulas, on a teacher whose
every answer is known (E = identity, G = identity, T = the mean pixel's class)."""

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from tgt_jax import sharding, tgt
from tgt_jax.teachers import report

NUM_CLASSES = 4


def _known_teacher():
  """Images [N, 2, 2, 1] in [0, 1]: E and G are reshapes, T's logits peak at class ⌊4·mean⌋."""
  def label(p, x):
    mean = jnp.mean(x, axis=(1, 2, 3))
    centers = (jnp.arange(NUM_CLASSES) + 0.5) / NUM_CLASSES
    return -p["sharpness"] * jnp.square(mean[:, None] - centers[None])

  return tgt.Teacher(encode=lambda p, x: x.reshape(x.shape[0], -1),
                     decode=lambda p, z: jnp.clip(z.reshape(z.shape[0], 2, 2, 1), 0.0, 1.0),
                     label=label, latent_dim=4, pixel_range=(0.0, 1.0))


def _batches(images, labels, batch_size):
  for start in range(0, len(images), batch_size):
    rows = slice(start, start + batch_size)
    yield {"image": images[rows], "label": labels[rows], "mask": np.ones(batch_size, bool)}


@pytest.fixture(scope="module")
def outputs():
  mesh = sharding.make_mesh()
  rng = np.random.default_rng(0)
  images = rng.uniform(0, 1, (24, 2, 2, 1)).astype(np.float32)
  labels = np.minimum((images.mean(axis=(1, 2, 3)) * NUM_CLASSES).astype(np.int32),
                      NUM_CLASSES - 1)
  labels[:4] = (labels[:4] + 1) % NUM_CLASSES       # 4 of 24 wrong: accuracy is not 1
  params = sharding.replicate(mesh, {"sharpness": jnp.asarray(50.0)})
  out = report.collect(report.make_figures(_known_teacher(), mesh), params,
                       _batches(images, labels, 8), mesh, num_examples=20, seed=0)
  return images, labels, out


def test_collect_stops_at_the_requested_count_in_order(outputs):
  images, labels, out = outputs
  assert len(out["label"]) == 20
  np.testing.assert_array_equal(out["image"], images[:20])
  np.testing.assert_array_equal(out["label"], labels[:20])


def test_figures_match_their_formulas(outputs):
  _, labels, out = outputs
  figures = report.summarize(out, NUM_CLASSES, (0.0, 1.0))
  np.testing.assert_allclose(out["recon"], out["image"])         # identity E, G
  assert figures["reconstruction_psnr_db"] > 100          # exact up to the 1e-12 floor
  predicted = np.argmax(out["logits"], -1)
  per_class = [np.mean(predicted[labels[:20] == c] == c) for c in range(NUM_CLASSES)
               if np.any(labels[:20] == c)]
  assert figures["labeler_test_accuracy"] == pytest.approx(np.mean(per_class))
  assert figures["labeler_test_accuracy"] < 1.0
  assert figures["labeler_accuracy_on_reconstructions"] == figures["labeler_test_accuracy"]
  logits = out["prior_logits"].astype(np.float64)
  p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  entropy = -np.sum(p * np.log(p), -1).mean()
  assert figures["prior_label_entropy_nats"] == pytest.approx(entropy, rel=1e-6)
  assert figures["prior_label_entropy_uniform_nats"] == pytest.approx(np.log(NUM_CLASSES))
  assert figures["prior_classes_hit"] == len(np.unique(np.argmax(out["prior_logits"], -1)))
  kept = [figures[f"label_kept_at_sigma_{s}"] for s in (0.25, 0.5, 1.0, 2.0)]
  assert all(0.0 <= k <= 1.0 for k in kept) and kept[0] > kept[-1]   # more noise, fewer kept


def test_psnr_of_a_known_error():
  out = {"recon_sq_error": np.array([0.01, 0.0001]), "label": np.array([0, 1]),
         "logits": np.eye(2)[[0, 1]], "recon_logits": np.eye(2)[[0, 1]],
         "prior_logits": np.zeros((2, 2)),
         **{f"noisy_logits_{s}": np.eye(2)[[0, 1]] for s in (0.25, 0.5, 1.0, 2.0)}}
  figures = report.summarize(out, 2, (-1.0, 1.0))          # range 2: PSNR = 10·log10(4 / mse)
  assert figures["reconstruction_psnr_db"] == pytest.approx(
      np.mean([10 * np.log10(4 / 0.01), 10 * np.log10(4 / 0.0001)]))
  assert figures["prior_label_entropy_nats"] == pytest.approx(np.log(2))


def test_grid_has_one_row_per_picture_kind(outputs):
  _, _, out = outputs
  picture = report.grid(out, 3, (0.0, 1.0))
  h, w = picture.cell
  assert (h, w) == (2, 2) and picture.shape[0] == 5 * (h + 1) + 1     # 5 rows, 1 px padding


def test_text_data_and_a_negative_count_are_refused():
  config = ml_collections.ConfigDict({"data": {"name": "wordnet"}, "report_examples": 10,
                                      "teacher": {"kind": "", "generator": "conv_vae",
                                                  "labeler": "cnn_labeler"}})
  with pytest.raises(ValueError, match="measures image teachers"):
    report.validate(config)
  config.data.name, config.report_examples = "digits", -1
  with pytest.raises(ValueError, match="report_examples=-1"):
    report.validate(config)


def test_collect_keeps_the_pictures_of_the_first_rows_only():
  mesh = sharding.make_mesh()
  rng = np.random.default_rng(1)
  images = rng.uniform(0, 1, (24, 2, 2, 1)).astype(np.float32)
  params = sharding.replicate(mesh, {"sharpness": jnp.asarray(50.0)})
  out = report.collect(report.make_figures(_known_teacher(), mesh), params,
                       _batches(images, np.zeros(24, np.int32), 8), mesh, num_examples=0,
                       seed=0, image_rows=3)
  assert len(out["label"]) == len(out["logits"]) == 24
  for name in report.IMAGES:
    assert len(out[name]) == 3, name
  np.testing.assert_array_equal(out["image"], images[:3])
