"""models/text.py: ids and soft tokens agree, padding is invisible, the VAE's interface."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tgt_jax import models, sharding
from tgt_jax.models import text

from conftest import FAST_COMPILE

VOCAB = 50


def init(model, *args):
  """model.init as one compiled call (op by op, each initializer compiles on its own)."""
  return jax.jit(model.init, compiler_options=FAST_COMPILE)(*args)


def apply(model, params, *args, method=None):
  """model.apply (or one of its methods) as one compiled call."""
  return jax.jit(functools.partial(model.apply, method=method),
                 compiler_options=FAST_COMPILE)(params, *args)


def _tokens(seed, batch=4, length=8):
  ids = jax.random.randint(jax.random.key(seed), (batch, length), 3, VOCAB)
  lengths = jnp.arange(batch) % (length - 2) + 2                  # 2.. tokens, then padding
  return jnp.where(jnp.arange(length) < lengths[:, None], ids, 0).astype(jnp.int32)


@pytest.mark.parametrize("name", ["text_transformer", "bag_of_embeddings", "text_labeler"])
def test_ids_and_one_hot_tokens_give_the_same_logits(name):
  model = models.classifier(name, 26, vocab_size=VOCAB)
  x = _tokens(0)
  params = init(model, jax.random.key(1), x)
  by_ids = apply(model, params, x)
  assert by_ids.shape == (4, 26)
  np.testing.assert_allclose(by_ids, apply(model, params, jax.nn.one_hot(x, VOCAB)), atol=1e-5)


@pytest.mark.parametrize("name", ["text_transformer", "bag_of_embeddings"])
def test_padding_is_invisible(name):
  model = models.classifier(name, 26, vocab_size=VOCAB)
  x = _tokens(2)
  params = init(model, jax.random.key(3), x)
  longer = jnp.pad(x, ((0, 0), (0, 5)))
  np.testing.assert_allclose(apply(model, params, x), apply(model, params, longer), atol=1e-5)


def test_too_long_sequences_name_the_limit():
  model = models.classifier("text_transformer", 26, vocab_size=VOCAB)
  x = jnp.ones((1, text.MAX_POSITIONS + 1), jnp.int32)
  with pytest.raises(ValueError, match="max_len"):
    jax.eval_shape(model.init, jax.random.key(0), x)     # refused while tracing: nothing runs


def test_labeler_is_clearly_bigger_than_the_student_without_embeddings():
  x = _tokens(4)

  def size(name):
    params = jax.eval_shape(models.classifier(name, 26, vocab_size=VOCAB).init,   # shapes only
                            jax.random.key(0), x)["params"]
    return sum(a.size for path, a in jax.tree_util.tree_flatten_with_path(params)[0]
               if "embedding" not in jax.tree_util.keystr(path))

  assert size("text_labeler") > 4 * size("text_transformer")


def test_masked_token_head_covers_the_vocabulary():
  model = models.classifier("text_transformer", 26, vocab_size=VOCAB)
  x = _tokens(5)
  params = init(model, jax.random.key(0), x)
  assert apply(model, params, x, method="mlm_logits").shape == (4, 8, VOCAB)


def test_sequence_vae_decodes_ids_and_their_relaxation():
  vae = models.generator("text_vae_tiny", (8,), 6, vocab_size=VOCAB)
  x = _tokens(6)
  params = init(vae, jax.random.key(0), x, jax.random.key(1))
  mean, logvar = apply(vae, params, x, method="encode")
  assert mean.shape == logvar.shape == (4, 6)
  z = jax.random.normal(jax.random.key(2), (3, 6))
  ids = apply(vae, params, z, method="decode")
  soft = apply(vae, params, z, method="decode_soft")
  assert ids.shape == (3, 8) and ids.dtype == jnp.int32
  np.testing.assert_allclose(soft.sum(-1), 1.0, atol=1e-5)
  np.testing.assert_array_equal(ids, jnp.argmax(soft, -1))
  logits, _, _ = apply(vae, params, x, jax.random.key(3))
  assert logits.shape == (4, 8, VOCAB)


def test_sharded_ids_embed_like_unsharded_ones():
  """Under the 8-device mesh (explicit sharding) the lookup keeps the batch's layout."""
  model = models.classifier("text_transformer", 26, vocab_size=VOCAB)
  mesh = sharding.make_mesh()
  x = np.asarray(_tokens(7, batch=16))
  params = init(model, jax.random.key(0), jnp.asarray(x))
  expected = apply(model, params, jnp.asarray(x))
  sharded_apply = jax.jit(model.apply,
                          in_shardings=(sharding.replicated(mesh), sharding.batch_sharded(mesh)),
                          compiler_options=FAST_COMPILE)
  out = sharded_apply(sharding.replicate(mesh, params), sharding.to_global(mesh, x))
  np.testing.assert_allclose(out, expected, atol=1e-5)
