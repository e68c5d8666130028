"""tasks/cache.py: what job=synthesize and a student agree on, checked without writing a cache
(tests/tasks/test_synthesize.py writes and reads real ones)."""

import os

import pytest

from tgt_jax import configlib
from tgt_jax.tasks import cache, method

DIGITS = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "digits.py")
TEACHER = {"teacher_params.labeler": "abc"}


def _config(**overrides):
  return configlib.load(DIGITS, "runlocal", **overrides)


def _manifest(config, samples_per_example=4, **changed):
  settings = {**cache.recorded_settings(config, TEACHER, 50), **changed}
  return {"settings": settings, "samples_per_example": samples_per_example}


def test_settings_have_defaults_for_a_config_without_the_block():
  config = _config()
  del config["tgt_cache"]
  assert cache.settings(config) == {"dir": "", "samples_per_example": 16, "samples": 0}
  assert cache.settings(_config(**{"tgt_cache.samples": 2}))["samples"] == 2


def test_a_matching_cache_gives_the_samples_the_student_uses():
  config = _config()
  cfg = method.tgt_config(config)
  assert cache.check(_manifest(config), config, cfg, TEACHER, 50, "C") == 4
  config = _config(**{"tgt_cache.samples": 2})
  assert cache.check(_manifest(config), config, cfg, TEACHER, 50, "C") == 2


@pytest.mark.parametrize("changed,match", [
    ({"seed": 1}, r"at 'C' was made with other settings: seed: cache 1, this run 0"),
    ({"teacher_params.labeler": "xyz"}, r"teacher_params.labeler: cache 'xyz', this run 'abc'"),
])
def test_a_cache_made_otherwise_is_refused_by_name(changed, match):
  config = _config()
  with pytest.raises(ValueError, match=match):
    cache.check(_manifest(config, **changed), config, method.tgt_config(config), TEACHER, 50,
                "C")


def test_too_few_samples_are_refused_by_name():
  config = _config(**{"tgt_cache.samples": 9})
  with pytest.raises(ValueError, match=r"tgt_cache.samples=9: the cache at 'C' holds 4"):
    cache.check(_manifest(config), config, method.tgt_config(config), TEACHER, 50, "C")
  config = _config(**{"tgt.num_samples": 6})
  with pytest.raises(ValueError, match=r"tgt.num_samples=6 .* gives 4 .* >= 6"):
    cache.check(_manifest(config), config, method.tgt_config(config), TEACHER, 50, "C")


def test_the_fingerprint_names_one_manifest():
  manifest = _manifest(_config())
  assert cache.fingerprint(manifest) == cache.fingerprint(dict(manifest))
  assert cache.fingerprint(manifest) != cache.fingerprint({**manifest, "samples_per_example": 5})
