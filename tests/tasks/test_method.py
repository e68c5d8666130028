"""tasks/method.py: a run config's method and config.tgt block become one checked TGTConfig."""

import os

import pytest

from tgt_jax import configlib
from tgt_jax.tasks import method

DIGITS = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "digits.py")


def test_the_method_and_its_block_are_read_together():
  config = configlib.load(DIGITS, "method=tgt_gradient", **{"tgt.sigma": 0.25, "tgt.steps": 3})
  cfg = method.tgt_config(config)
  assert (cfg.method, cfg.sigma, cfg.steps) == ("tgt_gradient", 0.25, 3)
  assert cfg.needs_generator and cfg.uses_synthetic


def test_a_bad_value_is_refused_by_name():
  with pytest.raises(ValueError, match=r"Unknown method 'tgt_magic'"):
    method.tgt_config(configlib.load(DIGITS, "method=tgt_magic"))
  with pytest.raises(ValueError, match=r"tgt.sigma must be a finite number >= 0, got -1.0"):
    method.tgt_config(configlib.load(DIGITS, None, **{"tgt.sigma": -1.0}))
