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
  takes per-example gradients). Params are drawn in NumPy: a real init compiles every
  initializer, seconds on CPU."""
  x = np.random.default_rng(0).standard_normal((4, 6, 6, 2)).astype(np.float32)
  shapes = jax.eval_shape(model.init, jax.random.key(0), x)
  assert {s.dtype for s in jax.tree.leaves(shapes)} == {np.dtype(np.float32)}
  rng = np.random.default_rng(1)
  params = jax.tree.map(lambda s: 0.3 * rng.standard_normal(s.shape, np.float32), shapes)
  logits = jax.jit(model.apply)(params, x)
  assert logits.shape == (4, 3) and logits.dtype == jnp.float32
  np.testing.assert_allclose(jax.jit(model.apply)(params, x[2:3])[0], logits[2], rtol=1e-5,
                             atol=1e-5)


def test_conv_features_and_strides_of_different_lengths_are_named():
  model = classifiers.ConvNet(3, conv_features=(4, 8), conv_strides=(1,))
  with pytest.raises(ValueError, match=r"conv_features \(4, 8\) and conv_strides \(1,\)"):
    model.init(jax.random.key(0), jnp.zeros((1, 6, 6, 1)))
