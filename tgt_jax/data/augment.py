"""Label-preserving augmentation of small images, inside the jitted step.

One function of (name, key, images) so a config picks it by name, and the
teacher and the student see the same augmented image (consistent distillation).
A 1-pixel shift can cost an 8×8 MLP several points, so the choice
is per method and made on validation (benchmarks/sample_efficiency.py).
"""

import jax
import jax.numpy as jnp

AUGMENTATIONS = ("none", "shift", "flip_shift")
STREAM = 2 ** 20     # fold_in index of the step's augmentation key: apart from TGT's own key


def check(name):
  if name not in AUGMENTATIONS:
    raise ValueError(f"Unknown augment {name!r}; choose one of {list(AUGMENTATIONS)}.")


def random_shift(rng, images, max_shift=1, fill=0.0):
  """Translate each image by up to `max_shift` pixels per axis; uncovered pixels get `fill`.

  Every candidate shift is a static slice, and each example selects its own with a
  one-hot weight: no per-example gather, so it shards like any elementwise op.
  """
  n, h, w, _ = images.shape
  s = max_shift
  padded = jnp.pad(images, ((0, 0), (s, s), (s, s), (0, 0)), constant_values=fill)
  candidates = [padded[:, i:i + h, j:j + w] for i in range(2 * s + 1) for j in range(2 * s + 1)]
  choice = jax.random.randint(rng, (n,), 0, len(candidates))
  weights = jax.nn.one_hot(choice, len(candidates), dtype=images.dtype)
  return sum(weights[:, c, None, None, None] * image for c, image in enumerate(candidates))


def random_flip(rng, images):
  """Mirror each image left–right with probability 1/2."""
  flip = jax.random.bernoulli(rng, 0.5, (images.shape[0], 1, 1, 1))
  return jnp.where(flip, images[:, :, ::-1], images)


def augment(name, rng, images, fill=0.0):
  check(name)
  if name == "none":
    return images
  shift_rng, flip_rng = jax.random.split(rng)
  if name == "flip_shift":
    images = random_flip(flip_rng, images)
  return random_shift(shift_rng, images, 1, fill)


def augment_batch(name, rng, batch, fill):
  """The real images (and the transfer set's) augmented; the same key gives the same images."""
  if name == "none":
    return batch
  out = dict(batch)
  for i, key in enumerate(k for k in ("image", "transfer") if k in batch):
    out[key] = augment(name, jax.random.fold_in(rng, i), batch[key], fill)
  return out
