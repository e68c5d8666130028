"""models/text.py: ids and soft tokens agree, padding is invisible, the VAE's interface."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tgt_jax import models, sharding
from tgt_jax.models import text

VOCAB = 50


def _tokens(seed, batch=4, length=8):
  ids = jax.random.randint(jax.random.key(seed), (batch, length), 3, VOCAB)
  lengths = jnp.arange(batch) % (length - 2) + 2                  # 2.. tokens, then padding
  return jnp.where(jnp.arange(length) < lengths[:, None], ids, 0).astype(jnp.int32)


@pytest.mark.parametrize("name", ["text_transformer", "bag_of_embeddings", "text_labeler"])
def test_ids_and_one_hot_tokens_give_the_same_logits(name):
  model = models.classifier(name, 26, vocab_size=VOCAB)
  x = _tokens(0)
  params = model.init(jax.random.key(1), x)
  by_ids = model.apply(params, x)
  assert by_ids.shape == (4, 26)
  np.testing.assert_allclose(by_ids, model.apply(params, jax.nn.one_hot(x, VOCAB)), atol=1e-5)


@pytest.mark.parametrize("name", ["text_transformer", "bag_of_embeddings"])
def test_padding_is_invisible(name):
  model = models.classifier(name, 26, vocab_size=VOCAB)
  x = _tokens(2)
  params = model.init(jax.random.key(3), x)
  longer = jnp.pad(x, ((0, 0), (0, 5)))
  np.testing.assert_allclose(model.apply(params, x), model.apply(params, longer), atol=1e-5)


def test_too_long_sequences_name_the_limit():
  model = models.classifier("text_transformer", 26, vocab_size=VOCAB)
  x = jnp.ones((1, text.MAX_POSITIONS + 1), jnp.int32)
  with pytest.raises(ValueError, match="max_len"):
    model.init(jax.random.key(0), x)


def test_labeler_is_clearly_bigger_than_the_student_without_embeddings():
  x = _tokens(4)

  def size(name):
    params = models.classifier(name, 26, vocab_size=VOCAB).init(jax.random.key(0), x)["params"]
    return sum(a.size for path, a in jax.tree_util.tree_flatten_with_path(params)[0]
               if "embedding" not in jax.tree_util.keystr(path))

  assert size("text_labeler") > 4 * size("text_transformer")


def test_masked_token_head_covers_the_vocabulary():
  model = models.classifier("text_transformer", 26, vocab_size=VOCAB)
  x = _tokens(5)
  params = model.init(jax.random.key(0), x)
  assert model.apply(params, x, method=model.mlm_logits).shape == (4, 8, VOCAB)


def test_sequence_vae_decodes_ids_and_their_relaxation():
  vae = models.generator("text_vae_tiny", (8,), 6, vocab_size=VOCAB)
  x = _tokens(6)
  params = vae.init(jax.random.key(0), x, jax.random.key(1))
  mean, logvar = vae.apply(params, x, method=vae.encode)
  assert mean.shape == logvar.shape == (4, 6)
  z = jax.random.normal(jax.random.key(2), (3, 6))
  ids = vae.apply(params, z, method=vae.decode)
  soft = vae.apply(params, z, method=vae.decode_soft)
  assert ids.shape == (3, 8) and ids.dtype == jnp.int32
  np.testing.assert_allclose(soft.sum(-1), 1.0, atol=1e-5)
  np.testing.assert_array_equal(ids, jnp.argmax(soft, -1))
  logits, _, _ = vae.apply(params, x, jax.random.key(3))
  assert logits.shape == (4, 8, VOCAB)


def test_sharded_ids_embed_like_unsharded_ones():
  """Under the 8-device mesh (explicit sharding) the lookup keeps the batch's layout."""
  model = models.classifier("text_transformer", 26, vocab_size=VOCAB)
  mesh = sharding.make_mesh()
  x = np.asarray(_tokens(7, batch=16))
  params = model.init(jax.random.key(0), jnp.asarray(x))
  expected = model.apply(params, jnp.asarray(x))
  apply = jax.jit(model.apply,
                  in_shardings=(sharding.replicated(mesh), sharding.batch_sharded(mesh)))
  out = apply(sharding.replicate(mesh, params), sharding.to_global(mesh, x))
  np.testing.assert_allclose(out, expected, atol=1e-5)
