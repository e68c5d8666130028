"""data/tfds_preprocess.py: crops, resizes and scales in TF, and a training image that is a
function of its example's seed."""

import io
import types

import numpy as np
import PIL.Image
import pytest
import tensorflow as tf

from tgt_jax.data import tfds_preprocess as pre


def _png(array):
  out = io.BytesIO()
  PIL.Image.fromarray(array).save(out, format="PNG")
  return tf.constant(out.getvalue())


def test_center_crop_takes_the_middle_of_the_short_side():
  image = tf.reshape(tf.range(6 * 10), (6, 10, 1))
  crop = pre.center_crop(image, 0.5).numpy()[..., 0]          # side round(0.5 * 6) = 3
  np.testing.assert_array_equal(crop, np.arange(60).reshape(6, 10)[1:4, 3:6])
  assert pre.center_crop(image, 0.01).shape == (1, 1, 1)     # never empty


def test_scale_clips_and_maps_0_255_onto_the_range():
  np.testing.assert_allclose(pre.scale(tf.constant([-5.0, 0.0, 127.5, 255.0, 300.0]),
                                       (-1.0, 1.0)), [-1, -1, 0, 1, 1])


def test_eval_image_decodes_crops_resizes_and_scales():
  spec = types.SimpleNamespace(channels=3, crop_fraction=1.0, image_size=4,
                               pixel_range=(0.0, 1.0))
  image = pre.eval_image(_png(np.full((8, 12, 3), 255, np.uint8)), spec)
  assert image.shape == (4, 4, 3) and image.dtype == tf.float32
  np.testing.assert_allclose(image, 1.0, rtol=1e-6)


@pytest.mark.parametrize("augment", ["flip", "crop_flip", "inception_crop_flip"])
def test_a_training_image_is_a_function_of_its_seed(augment):
  spec = types.SimpleNamespace(channels=3, crop_fraction=1.0, image_size=6, augment=augment,
                               crop_padding=1, area_range=(0.3, 1.0), pixel_range=(0.0, 1.0))
  data = _png(np.random.default_rng(0).integers(0, 256, (10, 10, 3), np.uint8))
  seeds = [tf.constant([s, 0], tf.int64) for s in range(6)]
  images = [pre.train_image(data, spec, seed).numpy() for seed in seeds]
  assert all(i.shape == (6, 6, 3) and 0 <= i.min() and i.max() <= 1 for i in images)
  np.testing.assert_array_equal(images[0], pre.train_image(data, spec, seeds[0]).numpy())
  assert any(not np.array_equal(images[0], other) for other in images[1:])
