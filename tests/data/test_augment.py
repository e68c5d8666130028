"""Augmentations: shapes, the shift they promise, and the clear error for a bad name."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tgt_jax.data import augment


def test_shift_moves_each_image_by_at_most_one_pixel():
  images = jnp.zeros((64, 8, 8, 1)).at[:, 3, 4, 0].set(1.0)    # one lit pixel
  out = np.asarray(augment.augment("shift", jax.random.key(0), images))
  assert out.shape == images.shape
  lit = [np.argwhere(o[..., 0] == 1.0)[0] for o in out]
  offsets = {(int(r) - 3, int(c) - 4) for r, c in lit}
  assert offsets <= {(i, j) for i in (-1, 0, 1) for j in (-1, 0, 1)}
  assert len(offsets) > 4                   # really random, per example
  assert np.all(out.sum(axis=(1, 2, 3)) == 1.0)      # the pixel moved, none was lost


def test_shift_fills_with_the_background():
  out = augment.random_shift(jax.random.key(1), jnp.full((16, 4, 4, 1), 0.5), 1, fill=-1.0)
  values = set(np.unique(np.asarray(out)).tolist())
  assert values <= {0.5, -1.0} and -1.0 in values


def test_flip_shift_mirrors_some_images():
  images = jnp.zeros((64, 8, 8, 1)).at[:, 4, 0, 0].set(1.0)    # lit at the left edge
  out = np.asarray(augment.augment("flip_shift", jax.random.key(2), images))
  cols = np.array([np.argwhere(o[..., 0] == 1.0)[0][1] if o.sum() else -1 for o in out])
  assert np.any(cols >= 6) and np.any(cols <= 1)


def test_none_is_identity_and_bad_name_is_named():
  images = jnp.ones((2, 8, 8, 1))
  assert augment.augment("none", jax.random.key(0), images) is images
  with pytest.raises(ValueError, match="Unknown augment 'blur'"):
    augment.augment("blur", jax.random.key(0), images)
