"""models/input_spec.py: a labeler's input spec maps ranges linearly, normalises with its
statistics and resizes only when asked."""

import numpy as np
import pytest

from tgt_jax.models import input_spec

SPEC = input_spec.InputSpec(resolution=4, value_range=(-1.0, 1.0), mean=(0.5, 0.25, 0.0),
                            std=(0.5, 0.25, 1.0))


def test_from_range_maps_the_ends_onto_the_ends():
  np.testing.assert_allclose(SPEC.from_range([0.0, 127.5, 255.0], (0.0, 255.0)), [-1, 0, 1])
  np.testing.assert_allclose(SPEC.from_range([-1.0, 0.5]), [-3.0, 0.0])   # default (0, 1)


def test_an_empty_source_range_is_named():
  with pytest.raises(ValueError, match=r"source_range \(1.0, 1.0\) is empty"):
    SPEC.from_range([0.5], (1.0, 1.0))


def test_normalize_uses_the_statistics_of_unit_pixels():
  images = np.full((1, 1, 1, 3), 0.0, np.float32)           # mid-range: 0.5 in [0, 1]
  np.testing.assert_allclose(SPEC.normalize(images)[0, 0, 0], [0.0, 1.0, 0.5])


def test_prepare_resizes_to_the_resolution_only_when_asked():
  images = np.ones((2, 8, 8, 3), np.float32)
  resized = SPEC.prepare(images)
  assert resized.shape == (2, 4, 4, 3)
  np.testing.assert_allclose(resized, 1.0, rtol=1e-6)        # a flat image stays flat
  assert SPEC.prepare(images, resize=False).shape == (2, 8, 8, 3)
