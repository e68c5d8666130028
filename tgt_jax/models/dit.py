"""diffusers' DiTTransformer2DModel (class-conditional latent diffusion, DiT) in Flax, from its files.

A generative teacher that can move around a real example: noise its latent, then denoise
it under a class label (models/diffusion.py samples with it). The layers follow diffusers
one for one, so a published `transformer/diffusion_pytorch_model.safetensors` loads by
renaming alone (`transformer_blocks_3/attn1/to_out_0/kernel` ↔
`transformer_blocks.3.attn1.to_out.0.weight`). What matching the reference depends on:
  * the timestep features: 256 sinusoids, frequencies exp(−ln(10⁴)·i/(128 − 1))
    (diffusers' downscale_freq_shift = 1, not the original DiT's /128), cos before sin;
  * the 2-D sincos position embedding: per token (row i, column j) the first half of
    the width encodes the column j, the second half the row i, each as [sin, cos];
  * every block owns a copy of the timestep/label embedder (diffusers' files repeat it;
    a file holding block 0's alone shares it), and the final layer's modulation uses
    block 0's;
  * AdaLN-zero chunks the 6·width modulation as shift, scale, gate (attention), then
    shift, scale, gate (MLP); LayerNorms have no affine, eps 1e-6 before attention and
    the config's norm_eps (1e-5) before the MLP;
  * the MLP is 4× wide with tanh-approximated GELU; the output is unpatchified as
    (rows, columns, p, p, channels) → (rows·p, columns·p, channels).
`dtype` is the compute dtype; parameters stay float32, LayerNorm, softmax and the
timestep features run in float32, and outputs are float32.
"""

import dataclasses
import functools
import math
import re
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from tgt_jax.models import weight_files

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "diffusion_pytorch_model.safetensors"
TIME_FEATURES = 256          # diffusers' CombinedTimestepLabelEmbeddings: fixed
ADA_NORM_EPS = 1e-6          # AdaLayerNormZero's and the final layer's LayerNorm
CLASS_NAMES = ("DiTTransformer2DModel", "Transformer2DModel")   # hub files use the old name

# DiTTransformer2DModel.__init__ defaults: what a config.json without the key means.
_DIFFUSERS_DEFAULTS = dict(
    num_attention_heads=16, attention_head_dim=72, in_channels=4, out_channels=None,
    num_layers=28, dropout=0.0, attention_bias=True, sample_size=32, patch_size=2,
    activation_fn="gelu-approximate", num_embeds_ada_norm=1000, norm_type="ada_norm_zero",
    norm_elementwise_affine=False, norm_eps=1e-5, cross_attention_dim=None,
    num_vector_embeds=None, only_cross_attention=False, double_self_attention=False)
_ACTIVATIONS = {"gelu-approximate": functools.partial(nn.gelu, approximate=True),
                "gelu": functools.partial(nn.gelu, approximate=False)}


@dataclasses.dataclass(frozen=True)
class DiTConfig:
  """The architecture of one published DiT; `num_classes` (the null class's id) labels mean 'no class'."""
  num_attention_heads: int = 16
  attention_head_dim: int = 72
  in_channels: int = 4
  out_channels: int = 8
  num_layers: int = 28
  sample_size: int = 32
  patch_size: int = 2
  num_classes: int = 1000
  activation_fn: str = "gelu-approximate"
  attention_bias: bool = True
  norm_eps: float = 1e-5

  @property
  def width(self):
    return self.num_attention_heads * self.attention_head_dim

  @property
  def null_class(self):
    """The label that asks for the unconditional prediction (classifier-free guidance)."""
    return self.num_classes

  @property
  def learned_sigma(self):
    return self.out_channels == 2 * self.in_channels

  @classmethod
  def from_diffusers(cls, config, path=CONFIG_FILE):
    """From the dict of a diffusers config.json; anything this module cannot build is named."""
    path = str(path)

    def bad(key, value, why):
      raise weight_files.WeightFileError(f"{path!r}: {key} = {value!r} {why}.")

    if not isinstance(config, dict):
      bad("(top level)", type(config).__name__, "is not a JSON object")
    if config.get("_class_name") not in CLASS_NAMES:
      bad("_class_name", config.get("_class_name"), f"is not a DiT config (one of {CLASS_NAMES})")
    get = lambda key: config.get(key, _DIFFUSERS_DEFAULTS[key])

    def positive_int(key):
      value = get(key)
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        bad(key, value, "is not a positive integer")
      return value

    for key, want in (("norm_type", "ada_norm_zero"), ("norm_elementwise_affine", False),
                      ("cross_attention_dim", None), ("num_vector_embeds", None),
                      ("only_cross_attention", False), ("double_self_attention", False)):
      if get(key) != want:
        bad(key, get(key), f"is not supported (only {want!r}, as DiT has)")
    if get("activation_fn") not in _ACTIVATIONS:
      bad("activation_fn", get("activation_fn"), f"is not supported (one of {tuple(_ACTIVATIONS)})")
    if get("num_embeds_ada_norm") is None:
      bad("num_embeds_ada_norm", None, "is not supported (a class-conditional DiT needs classes)")
    if get("patch_size") is None:
      bad("patch_size", None, "is not supported (DiT works on patches)")
    patch, size = positive_int("patch_size"), positive_int("sample_size")
    if size % patch:
      bad("sample_size", size, f"is not a multiple of patch_size {patch}")
    dim = positive_int("attention_head_dim") * positive_int("num_attention_heads")
    if dim % 4:
      bad("attention_head_dim", get("attention_head_dim"),
          "times num_attention_heads is not a multiple of 4 (the 2-D sincos embedding)")
    in_channels = positive_int("in_channels")
    out_channels = in_channels if get("out_channels") is None else positive_int("out_channels")
    if out_channels not in (in_channels, 2 * in_channels):
      bad("out_channels", out_channels, f"is neither in_channels ({in_channels}) nor twice it "
          "(noise, or noise and learned variance)")
    return cls(
        num_attention_heads=get("num_attention_heads"),
        attention_head_dim=get("attention_head_dim"), in_channels=in_channels,
        out_channels=out_channels, num_layers=positive_int("num_layers"), sample_size=size,
        patch_size=patch, num_classes=positive_int("num_embeds_ada_norm"),
        activation_fn=get("activation_fn"), attention_bias=bool(get("attention_bias")),
        norm_eps=float(get("norm_eps")))


def timestep_features(t, features=TIME_FEATURES):
  """[cos(t·f), sin(t·f)] with f_i = exp(−ln(10⁴)·i/(half − 1)) (float32, as diffusers does for DiT).

  The frequencies are a numpy constant rounded once from float64, so they do not depend
  on the backend's exp; t·f at t ≈ 1000 keeps float32's few-1e-5 absolute precision.
  """
  half = features // 2
  exponent = np.float32(-math.log(10000)) * np.arange(half, dtype=np.float32)
  exponent = exponent / np.float32(half - 1)
  freqs = np.exp(exponent.astype(np.float64)).astype(np.float32)
  args = jnp.asarray(t, jnp.float32)[:, None] * freqs[None, :]
  return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


def position_embedding(width, grid):
  """[grid², width] float32: token (row i, column j) ↦ [sin/cos of j, sin/cos of i] (float64 math)."""
  quarter = width // 4
  omega = 1.0 / 10000 ** (np.arange(quarter, dtype=np.float64) / quarter)
  rows, cols = np.meshgrid(np.arange(grid, dtype=np.float64), np.arange(grid, dtype=np.float64),
                           indexing="ij")

  def encode(pos):
    out = pos.reshape(-1)[:, None] * omega[None, :]
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)

  return np.concatenate([encode(cols), encode(rows)], axis=1).astype(np.float32)


def _layer_norm(x, eps, dtype):
  """LayerNorm without affine parameters, statistics in float32."""
  x = x.astype(jnp.float32)
  mean = x.mean(-1, keepdims=True)
  var = jnp.square(x - mean).mean(-1, keepdims=True)
  return ((x - mean) * jax.lax.rsqrt(var + eps)).astype(dtype)


def _modulate(x, shift, scale):
  return x * (1 + scale[:, None]) + shift[:, None]


class TimestepMLP(nn.Module):
  """Dense → SiLU → Dense on the timestep features (diffusers' TimestepEmbedding)."""
  width: int
  dtype: Any

  @nn.compact
  def __call__(self, features):
    h = nn.silu(nn.Dense(self.width, dtype=self.dtype, name="linear_1")(features))
    return nn.Dense(self.width, dtype=self.dtype, name="linear_2")(h)


class LabelEmbedding(nn.Module):
  """One row per class plus the null class's (the last row)."""
  width: int
  num_classes: int
  dtype: Any

  @nn.compact
  def __call__(self, labels):
    # A one-hot product, not a gather: it follows the labels' sharding wherever they are
    # (batch-sharded, or vmapped over sharded examples by the synthesis job), where a
    # gather's output sharding is ambiguous. A label past the null class gives NaN.
    table = nn.Embed(self.num_classes + 1, self.width, dtype=self.dtype,
                     name="embedding_table").embedding
    rows = jax.nn.one_hot(labels, self.num_classes + 1, dtype=jnp.float32)
    out = jnp.dot(rows, table.astype(jnp.float32),
                  precision=jax.lax.Precision.HIGHEST).astype(self.dtype or jnp.float32)
    return jnp.where((labels > self.num_classes)[..., None], jnp.nan, out)


class TimestepLabelEmbedding(nn.Module):
  """The conditioning vector: timestep MLP(sinusoids) + class embedding."""
  width: int
  num_classes: int
  dtype: Any

  @nn.compact
  def __call__(self, t, labels):
    features = timestep_features(t).astype(self.dtype)
    time = TimestepMLP(self.width, self.dtype, name="timestep_embedder")(features)
    return time + LabelEmbedding(self.width, self.num_classes, self.dtype,
                                 name="class_embedder")(labels)


class AdaNormZero(nn.Module):
  """Block's conditioning → (6 modulations); named like diffusers' AdaLayerNormZero (norm1)."""
  width: int
  num_classes: int
  dtype: Any

  @nn.compact
  def __call__(self, t, labels):
    cond = TimestepLabelEmbedding(self.width, self.num_classes, self.dtype, name="emb")(t, labels)
    mod = nn.Dense(6 * self.width, dtype=self.dtype, name="linear")(nn.silu(cond))
    return cond, jnp.split(mod, 6, axis=-1)


class SelfAttention(nn.Module):
  """Multi-head self-attention over the patch tokens, heads split as [..., heads, head_dim]."""
  heads: int
  head_dim: int
  bias: bool
  dtype: Any

  @nn.compact
  def __call__(self, x):
    b, n, _ = x.shape
    width = self.heads * self.head_dim

    def project(name):
      return nn.Dense(width, use_bias=self.bias, dtype=self.dtype, name=name)(x).reshape(
          b, n, self.heads, self.head_dim)

    q, k, v = project("to_q"), project("to_k"), project("to_v")
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32)
    weights = jax.nn.softmax(logits / np.sqrt(self.head_dim), axis=-1).astype(self.dtype)
    out = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(b, n, width)
    return nn.Dense(width, dtype=self.dtype, name="to_out_0")(out)


class FeedForward(nn.Module):
  """width → 4·width → GELU → width (diffusers' FeedForward: net.0.proj, net.2)."""
  width: int
  activation_fn: str
  dtype: Any

  @nn.compact
  def __call__(self, x):
    h = nn.Dense(4 * self.width, dtype=self.dtype, name="proj")
    h = _ACTIVATIONS[self.activation_fn](h(x))
    return nn.Dense(self.width, dtype=self.dtype, name="net_2")(h)


class Block(nn.Module):
  """One AdaLN-zero transformer block; also returns its conditioning (block 0's ends the model)."""
  config: DiTConfig
  dtype: Any

  @nn.compact
  def __call__(self, x, t, labels):
    cfg = self.config
    cond, (shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp) = AdaNormZero(
        cfg.width, cfg.num_classes, self.dtype, name="norm1")(t, labels)
    h = _modulate(_layer_norm(x, ADA_NORM_EPS, self.dtype), shift_msa, scale_msa)
    x = x + gate_msa[:, None] * SelfAttention(
        cfg.num_attention_heads, cfg.attention_head_dim, cfg.attention_bias, self.dtype,
        name="attn1")(h)
    h = _modulate(_layer_norm(x, cfg.norm_eps, self.dtype), shift_mlp, scale_mlp)
    ff = FeedForward(cfg.width, cfg.activation_fn, self.dtype, name="ff")
    return x + gate_mlp[:, None] * ff(h), cond


class DiT(nn.Module):
  """(noisy latent NHWC, timestep [B], label [B]) → (noise, learned-σ channels), both NHWC float32.

  Labels run from 0 to num_classes, the last being the null class (others give NaN);
  timesteps may be integer or fractional. With out_channels == in_channels the second
  output has 0 channels.
  """
  config: DiTConfig
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, t, labels):
    cfg, p = self.config, self.config.patch_size
    b, height, width, _ = x.shape
    if (height, width) != (cfg.sample_size, cfg.sample_size):
      raise ValueError(f"DiT input is {height}x{width}; this model takes "
                       f"{cfg.sample_size}x{cfg.sample_size} latents (its sample_size).")
    t = jnp.broadcast_to(jnp.asarray(t), (b,))
    labels = jnp.broadcast_to(jnp.asarray(labels, jnp.int32), (b,))
    # A label outside [0, num_classes] reads past the table, which gives NaN (never a wrap).
    labels = jnp.where((labels < 0) | (labels > cfg.num_classes), cfg.num_classes + 1, labels)
    grid = cfg.sample_size // p
    h = PatchEmbed(cfg.width, p, self.dtype, name="pos_embed")(x.astype(self.dtype))
    h = h + jnp.asarray(position_embedding(cfg.width, grid), self.dtype)[None]
    cond0 = None
    for i in range(cfg.num_layers):
      h, cond = Block(cfg, self.dtype, name=f"transformer_blocks_{i}")(h, t, labels)
      cond0 = cond if cond0 is None else cond0
    shift, scale = jnp.split(
        nn.Dense(2 * cfg.width, dtype=self.dtype, name="proj_out_1")(nn.silu(cond0)), 2, axis=-1)
    h = _modulate(_layer_norm(h, ADA_NORM_EPS, self.dtype), shift, scale)
    h = nn.Dense(p * p * cfg.out_channels, dtype=self.dtype, name="proj_out_2")(h)
    h = h.reshape(b, grid, grid, p, p, cfg.out_channels).transpose(0, 1, 3, 2, 4, 5)
    out = h.reshape(b, height, width, cfg.out_channels).astype(jnp.float32)
    return out[..., :cfg.in_channels], out[..., cfg.in_channels:]


class PatchEmbed(nn.Module):
  """p×p patches, stride p → [B, tokens (row-major), width] (diffusers' pos_embed.proj)."""
  width: int
  patch: int
  dtype: Any

  @nn.compact
  def __call__(self, x):
    h = nn.Conv(self.width, (self.patch, self.patch), strides=self.patch, padding="VALID",
                dtype=self.dtype, name="proj")(x)
    return h.reshape(h.shape[0], -1, self.width)


def noise_fn(module, variables):
  """(x, t, labels) → predicted noise: what models/diffusion.py's samplers call."""
  return lambda x, t, labels: module.apply(variables, x, t, labels)[0]


@functools.lru_cache(maxsize=16)
def _abstract_params(config):
  """Parameters are float32 whatever the compute dtype: one trace per config is enough."""
  x = jax.ShapeDtypeStruct((1, config.sample_size, config.sample_size, config.in_channels),
                           jnp.float32)
  t = jax.ShapeDtypeStruct((1,), jnp.int32)
  return jax.eval_shape(DiT(config).init, jax.random.key(0), x, t, t)["params"]


def abstract_params(module):
  """The module's parameter tree as shapes (jax.eval_shape: nothing is computed)."""
  return _abstract_params(module.config)


_INDEXED = re.compile(r"^(transformer_blocks|to_out|net)_(\d+)$")
_OTHER_EMBEDDER = re.compile(r"^transformer_blocks\.[1-9]\d*\.norm1\.emb\.")
_LEAVES = {"kernel": "weight", "bias": "bias", "embedding": "weight"}


def _source_key(path, shared_embedder=False):
  """diffusers' name of the Flax parameter at `path` (ff's proj sits at net.0.proj).

  With `shared_embedder` every block's timestep/label embedder is read from block 0's.
  """
  modules = [_INDEXED.sub(r"\1.\2", p) for p in path[:-1]]
  if modules[-2:-1] == ["ff"] and modules[-1] == "proj":
    modules = modules[:-1] + ["net.0", "proj"]
  if shared_embedder and modules[0].startswith("transformer_blocks.") and modules[2:3] == ["emb"]:
    modules[0] = "transformer_blocks.0"
  return ".".join(modules + [_LEAVES[path[-1]]])


def _to_flax(value, ndim):
  """OIHW → HWIO for the patch conv, [out, in] → [in, out] for Dense; tables and biases as they are."""
  if ndim == 4 and value.ndim == 4:
    return weight_files.conv_kernel(value)
  if ndim == 2 and value.ndim == 2:
    return weight_files.linear_kernel(value)
  return value             # biases, or a misshapen tensor that check_shapes will name


def convert(tensors, module, path):
  """Variables {'params': float32 numpy tree} of `module` from a diffusers DiT state dict.

  Every missing and every unused tensor is reported at once, then any shape mismatch.
  Published files repeat the embedder in every block; a file that holds it in block 0
  alone (no block's `norm1.emb` beyond 0) shares that one.
  """
  expected = abstract_params(module)
  reader = weight_files.TensorReader(tensors, path)
  shared = not any(_OTHER_EMBEDDER.match(k) for k in tensors)
  flat = {}
  for keypath, leaf in traverse_util.flatten_dict(expected).items():
    ndim = len(leaf.shape)
    transform = (lambda v: v) if keypath[-1] == "embedding" else (lambda v, n=ndim: _to_flax(v, n))
    flat["/".join(keypath)] = reader(_source_key(keypath, shared), transform)
  return {"params": weight_files.finish(reader, flat, expected, path)}


def load(directory, dtype=jnp.float32):
  """(config, module, variables) from a diffusers DiT transformer directory (local or gs://)."""
  return weight_files.load_diffusers(directory, CONFIG_FILE, WEIGHTS_FILE, DiTConfig.from_diffusers,
                                     DiT, convert, dtype)
