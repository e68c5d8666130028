"""Per-example image preprocessing for the TFDS pipelines (tfds_input.py), in TF.

Images arrive undecoded (the pipelines read with SkipDecoding so that filtering
and shuffling move bytes, not pixels). All randomness is stateless: each example
gets its own seed, so a stream is a function of its seed whatever the number of
parallel map calls.

Augmentations (`augment`):
  "none"                 central crop (crop_fraction of the short side) + resize
  "flip"                 "none" + random horizontal flip
  "crop_flip"            "none" + zero-pad `crop_padding` pixels + random crop + flip (CIFAR)
  "inception_crop_flip"  random crop of area_range × the image, aspect in [3/4, 4/3],
                         resized to image_size, + flip (ImageNet training)
Evaluation is always "none": deterministic, the same as training without augmentation.
"""

import tensorflow as tf

AUGMENTS = ("none", "flip", "crop_flip", "inception_crop_flip")
ASPECT_RANGE = (3 / 4, 4 / 3)


def decode(data, channels):
  """Encoded image bytes (jpeg, png, ...) → uint8 [h, w, channels]."""
  return tf.io.decode_image(data, channels=channels, expand_animations=False)


def center_crop(image, fraction):
  """The central square whose side is `fraction` of the image's short side."""
  shape = tf.shape(image)
  height, width = shape[0], shape[1]
  side = tf.cast(tf.round(fraction * tf.cast(tf.minimum(height, width), tf.float32)), tf.int32)
  side = tf.maximum(side, 1)
  top, left = (height - side) // 2, (width - side) // 2
  return image[top:top + side, left:left + side]


def inception_crop(data, channels, area_range, seed):
  """A random crop (Inception style); jpegs decode only the crop window."""

  def window(shape):
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        shape, tf.zeros([0, 0, 4], tf.float32), seed=seed, min_object_covered=0.1,
        aspect_ratio_range=ASPECT_RANGE, area_range=area_range, max_attempts=10,
        use_image_if_no_bounding_boxes=True)
    return begin, size

  def from_jpeg():
    begin, size = window(tf.image.extract_jpeg_shape(data))
    crop = tf.stack([begin[0], begin[1], size[0], size[1]])
    return tf.image.decode_and_crop_jpeg(data, crop, channels=channels)

  def from_other():
    image = decode(data, channels)
    begin, size = window(tf.shape(image))
    return tf.slice(image, begin, size)

  return tf.cond(tf.io.is_jpeg(data), from_jpeg, from_other)


def resize(image, size, channels):
  """uint8 [h, w, c] → float32 [size, size, c] on the 0..255 scale."""
  image = tf.image.resize(image, (size, size), method="bilinear", antialias=True)
  return tf.ensure_shape(image, (size, size, channels))


def scale(image, pixel_range):
  """0..255 floats → `pixel_range`."""
  low, high = pixel_range
  return tf.clip_by_value(image, 0.0, 255.0) * ((high - low) / 255.0) + low


def eval_image(data, spec):
  image = center_crop(decode(data, spec.channels), spec.crop_fraction)
  return scale(resize(image, spec.image_size, spec.channels), spec.pixel_range)


def train_image(data, spec, seed):
  """One augmented training image; `seed` is this example's int64 [2] stateless seed."""
  crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  size, channels = spec.image_size, spec.channels
  if spec.augment == "inception_crop_flip":
    image = inception_crop(data, channels, spec.area_range, crop_seed)
    image = resize(image, size, channels)
  else:
    image = resize(center_crop(decode(data, channels), spec.crop_fraction), size, channels)
  if spec.augment == "crop_flip":
    pad = spec.crop_padding
    image = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
    image = tf.image.stateless_random_crop(image, (size, size, channels), seed=crop_seed)
  if spec.augment != "none":
    image = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
  return scale(image, spec.pixel_range)
