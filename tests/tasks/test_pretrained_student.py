"""tasks/pretrained_student.py: a student starts from the pretrained one, head excepted; a
pretrained student of another model or vocabulary, or none, is refused by name."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tgt_jax import models
from tgt_jax.engine import artifacts
from tgt_jax.tasks import pretrained_student


def test_load_into_keeps_the_fresh_head_and_checks_the_model(tmp_path):
  student = models.classifier("text_tiny", 5, vocab_size=30)
  x = jnp.ones((1, 10), jnp.int32)
  pretrained = student.init(jax.random.key(0), x)
  artifacts.save_params_then_json(tmp_path, pretrained, pretrained_student.META_FILE,
                                  {"model": "text_tiny", "vocabulary_fingerprint": "x"})
  fresh = student.init(jax.random.key(1), x)
  loaded = pretrained_student.load_into(fresh, tmp_path, "text_tiny")
  np.testing.assert_array_equal(loaded["params"]["head"]["kernel"],
                                fresh["params"]["head"]["kernel"])
  np.testing.assert_array_equal(loaded["params"]["trunk"]["embed"]["embedding"],
                                pretrained["params"]["trunk"]["embed"]["embedding"])
  with pytest.raises(ValueError, match="'text_tiny'.*'text_transformer'"):
    pretrained_student.load_into(fresh, tmp_path, "text_transformer")
  with pytest.raises(ValueError, match="another vocabulary"):
    pretrained_student.load_into(fresh, tmp_path, "text_tiny",
                                 vocabulary=("<pad>", "<unk>", "<mask>"))
  with pytest.raises(FileNotFoundError, match="job=pretrain"):
    pretrained_student.load_into(fresh, tmp_path / "missing", "text_tiny")
