"""Text models over token ids *or* soft token distributions.

Every text model takes x as int token ids [B, L] (0 = padding) or as float token
distributions [B, L, V]. Ids are looked up in the embedding table; a distribution
becomes its expected embedding x @ table, and its padding mask is 1 − x[..., PAD].
A one-hot distribution therefore gives exactly what its ids give, and TGT-gradient
can differentiate the labeler and the student through decoded *soft* text
(tgt.py: the continuous relaxation of the discrete domain).

The sequence VAE's decoder is non-autoregressive: z → all L positions' token
logits in one pass. Decoding is one jitted call with no loop over positions, and
its relaxation softmax(logits) is exactly differentiable in z.
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

PAD = 0
MAX_POSITIONS = 64                # position embeddings of the classifiers (config.data.max_len ≤)
_NEG = -1e9                       # additive attention bias of padding keys


def input_mask(x):
  """1 for real tokens, 0 for padding (soft inputs: 1 − P(padding))."""
  if jnp.issubdtype(x.dtype, jnp.integer):
    return (x != PAD).astype(jnp.float32)
  return jnp.clip(1.0 - x[..., PAD], 0.0, 1.0)


def embedding_lookup(table, ids):
  """table[ids], laid out like `ids`: under a mesh with explicit sharding a gather
  must be told its output sharding (the batch's, plus an unsharded feature axis)."""
  layout = jax.typeof(ids).sharding
  if layout.mesh.empty:                    # no mesh (plain init, single-device helpers)
    return jnp.take(table, ids, axis=0)
  spec = jax.sharding.PartitionSpec(*layout.spec, *[None] * (table.ndim - 1))
  return table.at[ids].get(out_sharding=jax.sharding.NamedSharding(layout.mesh, spec))


def masked_mean(h, mask):
  weights = mask[..., None]
  return jnp.sum(h * weights, axis=1) / jnp.maximum(jnp.sum(weights, axis=1), 1e-6)


class TokenEmbedding(nn.Module):
  """Token (+ learned position) embeddings of ids or of token distributions."""
  vocab_size: int
  width: int
  max_len: int = MAX_POSITIONS    # 0: no position embeddings (order-blind)

  def setup(self):
    self.table = self.param("embedding", nn.initializers.normal(0.02),
                            (self.vocab_size, self.width))
    if self.max_len:
      self.position = self.param("position", nn.initializers.normal(0.02),
                                 (self.max_len, self.width))

  def __call__(self, x):
    if jnp.issubdtype(x.dtype, jnp.integer):
      h = embedding_lookup(self.table, x)
    else:
      if x.shape[-1] != self.vocab_size:
        raise ValueError(f"Soft tokens have {x.shape[-1]} entries, the vocabulary "
                         f"{self.vocab_size}.")
      h = x @ self.table
    if self.max_len:
      if h.shape[1] > self.max_len:
        raise ValueError(f"Sequences of {h.shape[1]} tokens exceed the model's {self.max_len} "
                         "positions; lower config.data.max_len.")
      h = h + self.position[:h.shape[1]]
    return h

  def attend(self, h):
    """Logits over the vocabulary with the tied table (masked-token pretraining)."""
    return h @ self.table.T


class SelfAttention(nn.Module):
  """Multi-head self-attention whose keys are weighted by a (soft) mask."""
  width: int
  heads: int

  @nn.compact
  def __call__(self, h, key_mask):
    head_dim = self.width // self.heads
    q, k, v = (nn.DenseGeneral((self.heads, head_dim), name=name)(h)
               for name in ("query", "key", "value"))
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(head_dim).astype(h.dtype)
    if key_mask is not None:   # log(mask): −∞ for padding, 0 for tokens, smooth in between
      logits = logits + jnp.maximum(jnp.log(key_mask), _NEG)[:, None, None, :]
    out = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(logits, axis=-1), v)
    return nn.DenseGeneral(self.width, axis=(-2, -1), name="out")(out)


class Block(nn.Module):
  """Pre-LayerNorm transformer block."""
  width: int
  heads: int
  mlp_dim: int

  @nn.compact
  def __call__(self, h, key_mask):
    h = h + SelfAttention(self.width, self.heads)(nn.LayerNorm()(h), key_mask)
    y = nn.Dense(self.mlp_dim)(nn.LayerNorm()(h))
    return h + nn.Dense(self.width)(nn.gelu(y))


@dataclasses.dataclass(frozen=True)
class TransformerSize:
  """A transformer trunk's shape: what every text model's registry entry chooses."""
  width: int = 64
  depth: int = 2
  heads: int = 4
  mlp_dim: int = 128


class Trunk(nn.Module):
  """Embedding + transformer blocks: per-token features and the mask."""
  vocab_size: int
  size: TransformerSize

  def setup(self):
    s = self.size
    self.embed = TokenEmbedding(self.vocab_size, s.width)
    self.blocks = [Block(s.width, s.heads, s.mlp_dim) for _ in range(s.depth)]
    self.norm = nn.LayerNorm()

  def __call__(self, x, added=None):
    """`added` [B, L, width], if given, joins the token embeddings (shared word vectors)."""
    mask = input_mask(x)
    h = self.embed(x) if added is None else self.embed(x) + added
    for block in self.blocks:
      h = block(h, mask)
    return self.norm(h), mask


class TransformerClassifier(nn.Module):
  """Transformer encoder, masked mean-pool, linear head: the text student and labeler."""
  num_classes: int
  vocab_size: int
  size: TransformerSize = TransformerSize()

  def setup(self):
    self.trunk = Trunk(self.vocab_size, self.size)
    self.head = nn.Dense(self.num_classes)
    self.mlm_bias = self.param("mlm_bias", nn.initializers.zeros, (self.vocab_size,))

  def embed(self, x):
    """The pooled representation (also a retrieval tower's output)."""
    h, mask = self.trunk(x)
    return masked_mean(h, mask)

  def __call__(self, x):
    return self.head(self.embed(x))

  def mlm_logits(self, x, positions=None):
    """Vocabulary logits at `positions` [B, K] (default: every position): the masked-token
    pretraining head. Only the masked positions need the costly vocabulary projection."""
    h, _ = self.trunk(x)
    if positions is not None:     # a one-hot product, not a gather: shards like the batch
      h = jnp.einsum("bkl,bld->bkd", jax.nn.one_hot(positions, h.shape[1], dtype=h.dtype), h)
    return self.trunk.embed.attend(h) + self.mlm_bias


class BagOfEmbeddings(nn.Module):
  """Mean of token embeddings → MLP: the order-blind text baseline."""
  num_classes: int
  vocab_size: int
  width: int = 64
  hidden: int = 64

  @nn.compact
  def __call__(self, x):
    h = TokenEmbedding(self.vocab_size, self.width, max_len=0)(x)
    h = nn.relu(nn.Dense(self.hidden)(masked_mean(h, input_mask(x))))
    return nn.Dense(self.num_classes)(h)


class TextVAE(nn.Module):
  """Sequence VAE: transformer encoder → Gaussian latent → non-autoregressive decoder.

  `image_shape` is (max_len,) as for every dataset of tgt_jax; `output_range` is
  unused (kept for the generator interface).
  """
  vocab_size: int
  image_shape: tuple
  latent_dim: int = 32
  size: TransformerSize = TransformerSize(width=128, depth=2, heads=4, mlp_dim=256)
  output_range: tuple = (0.0, 1.0)

  def setup(self):
    s = self.size
    self.encoder = Trunk(self.vocab_size, s)
    self.to_latent = nn.Dense(2 * self.latent_dim)
    self.from_latent = nn.Dense(s.width)
    self.to_positions = nn.Dense(self.image_shape[0] * s.width)
    self.positions = self.param("decoder_position", nn.initializers.normal(0.02),
                                (self.image_shape[0], s.width))
    self.decoder = [Block(s.width, s.heads, s.mlp_dim) for _ in range(s.depth)]
    self.decoder_norm = nn.LayerNorm()
    self.to_vocab = nn.Dense(self.vocab_size)

  def encode(self, x):
    """x → (mean, logvar) of q(z|x)."""
    h, mask = self.encoder(x)
    mean, logvar = jnp.split(self.to_latent(masked_mean(h, mask)), 2, axis=-1)
    return mean, jnp.clip(logvar, -10.0, 10.0)

  def decode_logits(self, z):
    """z → token logits of every position [B, L, V], in parallel."""
    latent = self.from_latent(z)[:, None, :]      # conditions every block
    # Each position gets its own projection of z: the decoder starts from a sketch of the
    # whole gloss, not from one vector copied L times (which decodes to "the the the …").
    h = self.to_positions(z).reshape(z.shape[0], *self.positions.shape) + self.positions
    for block in self.decoder:
      h = block(h + latent, None)
    return self.to_vocab(self.decoder_norm(h))

  def decode(self, z):
    """z → token ids (greedy: the most likely token at each position)."""
    return jnp.argmax(self.decode_logits(z), axis=-1).astype(jnp.int32)

  def decode_soft(self, z):
    """z → token distributions [B, L, V]: the relaxation TGT-gradient differentiates."""
    return jax.nn.softmax(self.decode_logits(z), axis=-1)

  def __call__(self, x, rng):
    """Training pass: reparameterised sample → token logits, mean, logvar."""
    mean, logvar = self.encode(x)
    z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(rng, mean.shape, mean.dtype)
    return self.decode_logits(z), mean, logvar
