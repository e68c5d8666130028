"""Models by name: shapes, ranges and the errors for unknown names."""

import jax
import jax.numpy as jnp
import pytest

from tgt_jax import models

from conftest import FAST_COMPILE


def _builds_without_a_vocabulary(name):
  try:
    models.classifier(name, 10)
  except ValueError:        # a text model: it asks for the data's vocabulary size
    return False
  return True


# The ResNets have their own tests (tests/models/test_resnet.py); running them on 8×8 here
# costs a minute. Text models: tests/models/test_text.py.
@pytest.mark.parametrize("name", sorted(n for n in models.CLASSIFIERS
                                        if not n.startswith("resnet")
                                        and _builds_without_a_vocabulary(n)))
def test_classifiers_give_logits(name):
  """init and apply as two compiled calls: op by op, every layer's ops compile on their own
  (cnn_labeler took 25 s that way under load)."""
  model = models.classifier(name, 10)
  x = jnp.zeros((3, 8, 8, 1))
  params = jax.jit(model.init, compiler_options=FAST_COMPILE)(jax.random.key(0), x)
  assert jax.jit(model.apply, compiler_options=FAST_COMPILE)(params, x).shape == (3, 10)


def test_labeler_is_clearly_bigger_than_students():
  x = jnp.zeros((1, 8, 8, 1))
  size = lambda n: sum(a.size for a in jax.tree.leaves(     # shapes only: nothing runs
      jax.eval_shape(models.classifier(n, 10).init, jax.random.key(0), x)))
  assert size("cnn_labeler") > 5 * max(size("cnn_small"), size("mlp"))


def test_unknown_names_list_the_known_ones():
  with pytest.raises(ValueError, match=r"Unknown classifier model name 'vit'.*cnn_small"):
    models.classifier("vit", 10)
  with pytest.raises(ValueError, match=r"Unknown generator model name 'gan'.*conv_vae"):
    models.generator("gan", (8, 8, 1), 16)


def test_text_models_need_a_vocabulary():
  with pytest.raises(ValueError, match="'text_transformer' reads text.*vocabulary size"):
    models.classifier("text_transformer", 26)
  with pytest.raises(ValueError, match="'text_vae' reads text.*vocabulary size"):
    models.generator("text_vae", (8,), 16)
  assert not _builds_without_a_vocabulary("text_tiny") and _builds_without_a_vocabulary("mlp")
