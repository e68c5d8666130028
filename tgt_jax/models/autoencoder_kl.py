"""diffusers' AutoencoderKL (the Stable Diffusion VAE family) in Flax, loaded from its published files.

The image teacher's E and G: E(x) = (mean(x) − shift)·scale and G(z) = decode(z/scale + shift),
so exploration moves in the latent space that latent diffusion models use (unit variance
after scaling). The layers follow diffusers one for one, so a published
`diffusion_pytorch_model.safetensors` loads with nothing but a renaming: Flax module
names are diffusers' with ".N" written "_N" (`down_blocks_0/resnets_1/conv2/kernel` ↔
`down_blocks.0.resnets.1.conv2.weight`). What matching the reference depends on:
  * downsampling pads one row/column at the bottom/right and convolves VALID with
    stride 2 (SAME would pad both sides on odd sizes);
  * upsampling repeats pixels (nearest ×2); jax.image.resize would antialias;
  * every GroupNorm uses the config's groups and eps 1e-6; the decoder's up blocks have
    layers_per_block + 1 resnets; the mid blocks' attention has a single head;
  * logvar is clipped to [−30, 20] like diffusers' DiagonalGaussianDistribution.
`dtype` is the compute dtype (e.g. bfloat16); parameters stay float32, GroupNorm and
softmax run in float32, and encode/decode return float32.
"""

import dataclasses
import functools
import re
from typing import Any, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from tgt_jax.models import weight_files

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "diffusion_pytorch_model.safetensors"
EPS = 1e-6
LOGVAR_RANGE = (-30.0, 20.0)

# diffusers' AutoencoderKL.__init__ defaults: what a config.json without the key means.
_DIFFUSERS_DEFAULTS = dict(
    in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",),
    up_block_types=("UpDecoderBlock2D",), block_out_channels=(64,), layers_per_block=1,
    act_fn="silu", latent_channels=4, norm_num_groups=32, sample_size=32,
    scaling_factor=0.18215, shift_factor=None, use_quant_conv=True, use_post_quant_conv=True,
    mid_block_add_attention=True)


@dataclasses.dataclass(frozen=True)
class AutoencoderKLConfig:
  """The architecture and latent normalisation of one published AutoencoderKL."""
  block_out_channels: Tuple[int, ...] = (64,)
  layers_per_block: int = 1
  latent_channels: int = 4
  norm_num_groups: int = 32
  in_channels: int = 3
  out_channels: int = 3
  scaling_factor: float = 0.18215
  shift_factor: float = 0.0
  use_quant_conv: bool = True
  use_post_quant_conv: bool = True
  mid_block_add_attention: bool = True
  sample_size: int = 32

  @classmethod
  def from_diffusers(cls, config, path=CONFIG_FILE):
    """From the dict of a diffusers config.json; anything this module cannot build is named."""
    path = str(path)

    def bad(key, value, why):
      raise weight_files.WeightFileError(f"{path!r}: {key} = {value!r} {why}.")

    if not isinstance(config, dict):
      bad("(top level)", type(config).__name__, "is not a JSON object")
    if config.get("_class_name") != "AutoencoderKL":
      bad("_class_name", config.get("_class_name"), "is not an AutoencoderKL config")
    get = lambda key: config.get(key, _DIFFUSERS_DEFAULTS[key])

    def positive_int(key):
      value = get(key)
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        bad(key, value, "is not a positive integer")
      return value

    channels = get("block_out_channels")
    if (not isinstance(channels, (list, tuple)) or not channels or
        any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in channels)):
      bad("block_out_channels", channels, "is not a non-empty list of positive integers")
    groups = positive_int("norm_num_groups")
    for c in channels:
      if c % groups:
        bad("norm_num_groups", groups, f"does not divide block_out_channels entry {c}")
    if get("act_fn") != "silu":
      bad("act_fn", get("act_fn"), "is not supported (only 'silu')")
    for key, kind in (("down_block_types", "DownEncoderBlock2D"),
                      ("up_block_types", "UpDecoderBlock2D")):
      types = get(key)
      if not isinstance(types, (list, tuple)) or len(types) != len(channels):
        bad(key, types, f"does not list one block per block_out_channels entry ({len(channels)})")
      for t in types:
        if t != kind:
          bad(key, types, f"has block type {t!r}; only {kind!r} is supported")
    shift = get("shift_factor")
    return cls(
        block_out_channels=tuple(channels), layers_per_block=positive_int("layers_per_block"),
        latent_channels=positive_int("latent_channels"), norm_num_groups=groups,
        in_channels=positive_int("in_channels"), out_channels=positive_int("out_channels"),
        scaling_factor=float(get("scaling_factor")),
        shift_factor=0.0 if shift is None else float(shift),
        use_quant_conv=bool(get("use_quant_conv")),
        use_post_quant_conv=bool(get("use_post_quant_conv")),
        mid_block_add_attention=bool(get("mid_block_add_attention")),
        sample_size=get("sample_size"))

  def to_latent(self, mean):
    """The diffusion model's latent of an encoder mean: (mean − shift)·scale."""
    return (mean - self.shift_factor) * self.scaling_factor

  def from_latent(self, z):
    """The decoder's input for a diffusion latent: z/scale + shift."""
    return z / self.scaling_factor + self.shift_factor


class GroupNorm(nn.Module):
  """GroupNorm with statistics and affine step in float32 (bf16 variances lose the signal)."""
  groups: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    scale = self.param("scale", nn.initializers.ones, (c,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
    g = x.astype(jnp.float32).reshape(x.shape[:-1] + (self.groups, c // self.groups))
    axes = tuple(range(1, x.ndim - 1)) + (x.ndim,)       # space and channels in the group
    mean = g.mean(axes, keepdims=True)
    var = jnp.square(g - mean).mean(axes, keepdims=True)  # two-pass, as torch computes it
    g = (g - mean) * jax.lax.rsqrt(var + EPS)
    return (g.reshape(x.shape) * scale + bias).astype(self.dtype)


def _conv(features, size, dtype, name, strides=1, padding=None):
  pad = size // 2 if padding is None else padding
  padding = padding if isinstance(padding, str) else ((pad, pad), (pad, pad))
  return nn.Conv(features, (size, size), strides=strides, padding=padding, dtype=dtype,
                 name=name)


class ResnetBlock(nn.Module):
  """norm–SiLU–conv twice, plus the input (1×1-projected when the width changes)."""
  features: int
  groups: int
  dtype: Any

  @nn.compact
  def __call__(self, x):
    h = nn.silu(GroupNorm(self.groups, self.dtype, name="norm1")(x))
    h = _conv(self.features, 3, self.dtype, "conv1")(h)
    h = nn.silu(GroupNorm(self.groups, self.dtype, name="norm2")(h))
    h = _conv(self.features, 3, self.dtype, "conv2")(h)
    if x.shape[-1] != self.features:
      x = _conv(self.features, 1, self.dtype, "conv_shortcut")(x)
    return x + h


class Attention(nn.Module):
  """Single-head self-attention over all pixels, with a residual (diffusers' mid-block attention)."""
  groups: int
  dtype: Any

  @nn.compact
  def __call__(self, x):
    b, h, w, c = x.shape
    y = GroupNorm(self.groups, self.dtype, name="group_norm")(x).reshape(b, h * w, c)
    dense = lambda name: nn.Dense(c, dtype=self.dtype, name=name)
    q, k, v = dense("to_q")(y), dense("to_k")(y), dense("to_v")(y)
    logits = jnp.einsum("bqc,bkc->bqk", q, k, preferred_element_type=jnp.float32)
    weights = jax.nn.softmax(logits / np.sqrt(c), axis=-1).astype(self.dtype)
    out = dense("to_out_0")(jnp.einsum("bqk,bkc->bqc", weights, v))
    return x + out.reshape(b, h, w, c)


class MidBlock(nn.Module):
  features: int
  groups: int
  attention: bool
  dtype: Any

  @nn.compact
  def __call__(self, x):
    x = ResnetBlock(self.features, self.groups, self.dtype, name="resnets_0")(x)
    if self.attention:
      x = Attention(self.groups, self.dtype, name="attentions_0")(x)
    return ResnetBlock(self.features, self.groups, self.dtype, name="resnets_1")(x)


class Downsample(nn.Module):
  """Pad bottom/right by one, then a VALID 3×3 stride-2 conv (diffusers' padding=0 case)."""
  features: int
  dtype: Any

  @nn.compact
  def __call__(self, x):
    x = jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))
    return _conv(self.features, 3, self.dtype, "conv", strides=2, padding="VALID")(x)


class Upsample(nn.Module):
  """Nearest-neighbour ×2 (pixel repetition, no antialiasing), then a 3×3 conv."""
  features: int
  dtype: Any

  @nn.compact
  def __call__(self, x):
    x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
    return _conv(self.features, 3, self.dtype, "conv")(x)


class Stage(nn.Module):
  """A down block (DownEncoderBlock2D) or an up block (UpDecoderBlock2D)."""
  features: int
  num_resnets: int
  groups: int
  resample: Any          # "down", "up" or None (the last block has no resampler)
  dtype: Any

  @nn.compact
  def __call__(self, x):
    for i in range(self.num_resnets):
      x = ResnetBlock(self.features, self.groups, self.dtype, name=f"resnets_{i}")(x)
    if self.resample is None:
      return x
    if self.resample == "down":
      return Downsample(self.features, self.dtype, name="downsamplers_0")(x)
    return Upsample(self.features, self.dtype, name="upsamplers_0")(x)


def _output_layers(x, features, groups, dtype):
  """conv_norm_out → SiLU → conv_out: how the encoder and the decoder both end."""
  x = nn.silu(GroupNorm(groups, dtype, name="conv_norm_out")(x))
  return _conv(features, 3, dtype, "conv_out")(x)


class Coder(nn.Module):
  """diffusers' Encoder (`down`: conv_in → down blocks → mid block → out) or Decoder (`up`:
  conv_in → mid block → up blocks, one resnet more each → out); the two mirror each other."""
  config: AutoencoderKLConfig
  dtype: Any
  direction: str          # "down" (the encoder) or "up" (the decoder)

  @nn.compact
  def __call__(self, x):
    cfg, groups, down = self.config, self.config.norm_num_groups, self.direction == "down"
    widths = tuple(cfg.block_out_channels if down else reversed(cfg.block_out_channels))
    x = _conv(widths[0], 3, self.dtype, "conv_in")(x)

    def stages(x):
      for i, features in enumerate(widths):
        x = Stage(features, cfg.layers_per_block + (0 if down else 1), groups,
                  self.direction if i < len(widths) - 1 else None, self.dtype,
                  name=f"{self.direction}_blocks_{i}")(x)
      return x

    def mid(x):
      return MidBlock(x.shape[-1], groups, cfg.mid_block_add_attention, self.dtype,
                      name="mid_block")(x)

    x = mid(stages(x)) if down else stages(mid(x))
    return _output_layers(x, 2 * cfg.latent_channels if down else cfg.out_channels, groups,
                          self.dtype)


class AutoencoderKL(nn.Module):
  """x ∈ [−1, 1] (NHWC) ↔ latent; `encode_latent`/`decode_latent` are the teacher's E and G."""
  config: AutoencoderKLConfig
  dtype: Any = jnp.float32

  def setup(self):
    cfg = self.config
    self.encoder = Coder(cfg, self.dtype, "down")
    self.decoder = Coder(cfg, self.dtype, "up")
    if cfg.use_quant_conv:
      self.quant_conv = nn.Conv(2 * cfg.latent_channels, (1, 1), dtype=self.dtype)
    if cfg.use_post_quant_conv:
      self.post_quant_conv = nn.Conv(cfg.latent_channels, (1, 1), dtype=self.dtype)

  def encode(self, x):
    """(mean, logvar) of the posterior, float32, logvar clipped like diffusers."""
    h = self.encoder(x.astype(self.dtype))
    if self.config.use_quant_conv:
      h = self.quant_conv(h)
    mean, logvar = jnp.split(h.astype(jnp.float32), 2, axis=-1)
    return mean, jnp.clip(logvar, *LOGVAR_RANGE)

  def decode(self, z):
    """Image (float32, nominally [−1, 1]) of an unscaled latent z."""
    z = z.astype(self.dtype)
    if self.config.use_post_quant_conv:
      z = self.post_quant_conv(z)
    return self.decoder(z).astype(jnp.float32)

  def encode_latent(self, x):
    """E(x) = (mean(x) − shift)·scale."""
    return self.config.to_latent(self.encode(x)[0])

  def decode_latent(self, z):
    """G(z) = decode(z/scale + shift)."""
    return self.decode(self.config.from_latent(z))

  def __call__(self, x):
    """Reconstruction of x from its posterior mean (builds every parameter at init)."""
    return self.decode(self.encode(x)[0])


def abstract_params(module):
  """The module's parameter tree as shapes (jax.eval_shape: nothing is computed)."""
  return _abstract_params(module.config)


@functools.lru_cache(maxsize=16)
def _abstract_params(config):
  """Parameters are float32 whatever the compute dtype: one trace per config is enough."""
  side = 2 ** len(config.block_out_channels)
  x = jax.ShapeDtypeStruct((1, side, side, config.in_channels), jnp.float32)
  return jax.eval_shape(AutoencoderKL(config).init, jax.random.key(0), x)["params"]


# Attention names of files saved by older diffusers (AttentionBlock), still common on the hub.
_OLD_ATTENTION = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}


def _source_key(path, reader):
  """diffusers' name for the Flax parameter at `path`, in the spelling the file uses."""
  modules = [re.sub(r"_(\d+)$", r".\1", p) for p in path[:-1]]
  leaf = {"kernel": "weight", "scale": "weight", "bias": "bias"}[path[-1]]
  key = ".".join(modules + [leaf])
  if not reader.has(key) and "attentions" in path[-3]:
    old = ".".join(modules[:-1] + [_OLD_ATTENTION.get(modules[-1], modules[-1]), leaf])
    if reader.has(old):
      return old
  return key


def convert(tensors, module, path):
  """Variables {'params': float32 numpy tree} of `module` from a diffusers state dict.

  Every missing and every unused tensor is reported at once, then any shape mismatch.
  """
  expected = abstract_params(module)
  reader = weight_files.TensorReader(tensors, path)
  flat = {}
  for keypath, leaf in traverse_util.flatten_dict(expected).items():
    # OIHW → HWIO for convs; [out, in] (or a 1×1 conv's [O, I, 1, 1]) → [in, out] for Dense.
    layout = weight_files.pytorch_layout(leaf.shape, keypath[-1])
    flat["/".join(keypath)] = reader(_source_key(keypath, reader), layout, shape=leaf.shape)
  return {"params": weight_files.finish(reader, flat, expected, path)}


def load(directory, dtype=jnp.float32):
  """(config, module, variables) from a diffusers AutoencoderKL directory (local or gs://)."""
  return weight_files.load_diffusers(directory, CONFIG_FILE, WEIGHTS_FILE, AutoencoderKLConfig.from_diffusers,
                                     AutoencoderKL, convert, dtype)
