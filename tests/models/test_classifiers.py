"""models/classifiers.py: the MLP and ConvNet give float32 logits per example, whatever the
batch, and a mismatched ConvNet is named."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tgt_jax.models import classifiers


@pytest.mark.parametrize("model", [classifiers.MLP(3, hidden=(4, 5)),
                                   classifiers.ConvNet(3, (4, 4), (1, 2), 6),
                                   classifiers.ConvNet(3, (4,), (2,), 6, dtype=jnp.bfloat16)],
                         ids=["mlp", "convnet", "convnet_bf16"])
def test_logits_depend_on_each_example_alone(model):
  """No batch statistics: an example's logits are the same alone or in a batch (exploration
  takes per-example gradients)."""
  x = jax.random.normal(jax.random.key(0), (4, 6, 6, 2))
  params = model.init(jax.random.key(1), x)
  assert {a.dtype for a in jax.tree.leaves(params)} == {np.dtype(np.float32)}
  logits = model.apply(params, x)
  assert logits.shape == (4, 3) and logits.dtype == jnp.float32
  np.testing.assert_allclose(model.apply(params, x[2:3])[0], logits[2], rtol=1e-5, atol=1e-5)


def test_conv_features_and_strides_of_different_lengths_are_named():
  model = classifiers.ConvNet(3, conv_features=(4, 8), conv_strides=(1,))
  with pytest.raises(ValueError, match=r"conv_features \(4, 8\) and conv_strides \(1,\)"):
    model.init(jax.random.key(0), jnp.zeros((1, 6, 6, 1)))
