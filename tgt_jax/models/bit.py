"""BiT (Big Transfer) ResNet-v2 labelers, loaded from the official BiT `.npz` files.

Two key layouts are read: the original BiT release's (`resnet/block1/unit01/a/...`,
gs://bit_models/BiT-M-R50x1-ILSVRC2012.npz and the like) and big_vision's own
(`block1/unit01/conv1/kernel`, `gn1/scale`, what big_vision writes for the BiT models
it trains, such as the distillation teachers under gs://bit_models/distill/). A
big_vision file is renamed to the original layout once, at read time, and defaults
to big_vision's stem pool padding (-inf, below).

Pre-activation bottleneck units with GroupNorm and weight-standardised convs,
so no layer mixes examples (exploration differentiates each synthetic example
through the labeler on its own). The Flax tree mirrors the published key
layout (`resnet/block1/unit01/a/group_norm/gamma` ↔
`block1/unit01/a/group_norm/scale`), so loading is a renaming, checked tensor
by tensor.

Numerics that decide whether published weights reproduce their accuracy:
  * weight standardisation: (w - mean) / sqrt(biased var + eps) over each
    kernel's H, W, I axes. BiT's released code uses eps 1e-10, timm's BiT
    models 1e-8 (`std_eps`); trained kernels have var >> 1e-8, so both agree.
    (Some ports divide by std + 1e-5 instead, which is not the same function.)
  * GroupNorm: 32 groups, eps 1e-5, the variance as the mean of squared
    deviations, computed in float32 whatever the compute dtype.
  * stem: 7×7/2 conv padded 3, then a 3×3/2 max-pool over the raw (not
    normalised, not ReLU'd, so partly negative) conv output. BiT's released
    code and timm's `resnetv2_*_bit` (stem 'fixed') pad that pool with ZEROS,
    big_vision's port (`bit_paper`) pads with -inf; they differ on border
    pixels only (0.02 on the tiny test fixture's logits). `pool_padding`
    picks one: 'zero' (default) is what BiT's published code and timm compute;
    '-inf' what a checkpoint trained or fine-tuned in big_vision saw.
Input: 224 px, pixels in [-1, 1] (BiT's (x - 0.5) / 0.5), see `BIT_INPUT`.
"""

import dataclasses
import itertools
import math
import re
from typing import Any, Optional, Sequence

import flax.linen as nn
from flax import traverse_util
import jax
import jax.numpy as jnp

from tgt_jax.models import weight_files
from tgt_jax.models.input_spec import InputSpec

BIT_INPUT = InputSpec(resolution=224, value_range=(-1.0, 1.0), mean=(0.5, 0.5, 0.5),
                      std=(0.5, 0.5, 0.5))
DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
PREFIX = "resnet/"
POOL_PADDINGS = ("zero", "-inf")


def depth_of(stage_sizes):
  """The ResNet depth a bottleneck stage layout has (3 convs a unit, plus stem and head)."""
  return 3 * sum(stage_sizes) + 2


def stage_sizes_of(depth):
  """Units per stage for R50 / R101 / R152, or an explicit sequence passed through."""
  if isinstance(depth, (tuple, list)):
    return tuple(int(d) for d in depth)
  if depth not in DEPTHS:
    raise ValueError(f"Unknown BiT depth {depth!r}; known: {sorted(DEPTHS)} "
                     "(or pass the units per stage, e.g. (3, 4, 6, 3)).")
  return DEPTHS[depth]


class GroupNorm(nn.Module):
  """GroupNorm with float32 statistics: variance as mean((x - mean)²), as BiT computes it."""
  groups: int = 32
  eps: float = 1e-5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    channels = x.shape[-1]
    if channels % self.groups:
      raise ValueError(f"GroupNorm: {channels} channels do not split into {self.groups} groups.")
    scale = self.param("scale", nn.initializers.ones, (channels,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (channels,), jnp.float32)
    y = x.astype(jnp.float32).reshape(*x.shape[:-1], self.groups, channels // self.groups)
    axes = tuple(range(1, y.ndim - 2)) + (y.ndim - 1,)
    mean = jnp.mean(y, axes, keepdims=True)
    var = jnp.mean(jnp.square(y - mean), axes, keepdims=True)
    y = ((y - mean) * jax.lax.rsqrt(var + self.eps)).reshape(x.shape)
    return (y * scale + bias).astype(self.dtype)


class StdConv(nn.Conv):
  """Bias-free conv whose kernel is standardised over H, W, I (float32, biased variance)."""
  eps: float = 1e-8
  use_bias: bool = False

  def param(self, name, *args, **kwargs):
    value = super().param(name, *args, **kwargs)
    if name != "kernel":
      return value
    w = jnp.asarray(value, jnp.float32)
    mean = jnp.mean(w, axis=(0, 1, 2), keepdims=True)
    var = jnp.mean(jnp.square(w - mean), axis=(0, 1, 2), keepdims=True)
    return (w - mean) * jax.lax.rsqrt(var + self.eps)


def _std_conv(features, kernel, strides, eps, dtype):
  """A k×k std-conv padded (k - 1) / 2 on every side, as BiT's released code pads."""
  pad = ((kernel - 1) // 2,) * 2
  return StdConv(features, (kernel, kernel), strides=strides, padding=(pad, pad), eps=eps,
                 dtype=dtype, name="standardized_conv2d")


class _ConvScope(nn.Module):
  """A std-conv named `standardized_conv2d`, as BiT nests it (root block, projection)."""
  features: int
  kernel: int
  strides: int
  std_eps: float
  dtype: Any

  @nn.compact
  def __call__(self, x):
    return _std_conv(self.features, self.kernel, self.strides, self.std_eps, self.dtype)(x)


@dataclasses.dataclass(frozen=True)
class _Norms:
  """What every unit of one network shares: GroupNorm groups and eps, the std-conv eps, dtype."""
  groups: int
  gn_eps: float
  std_eps: float
  dtype: Any

  def group_norm(self, name="group_norm"):
    return GroupNorm(self.groups, self.gn_eps, self.dtype, name=name)


class _NormActConv(nn.Module):
  """GroupNorm → ReLU → std-conv; with `proj_features`, also the shortcut's 1×1 projection of
  the same pre-activation (BiT keeps it under the unit's first layer, `a/proj`)."""
  features: int
  kernel: int
  strides: int
  norms: _Norms
  proj_features: int = 0
  proj_strides: int = 1

  @nn.compact
  def __call__(self, x):
    n = self.norms
    x = nn.relu(n.group_norm()(x))
    shortcut = None
    if self.proj_features:
      shortcut = _ConvScope(self.proj_features, 1, self.proj_strides, n.std_eps, n.dtype,
                            name="proj")(x)
    y = _std_conv(self.features, self.kernel, self.strides, n.std_eps, n.dtype)(x)
    return y, shortcut


class _Unit(nn.Module):
  """Pre-activation bottleneck: a (1×1), b (3×3, carries the stride), c (1×1, 4× wider)."""
  mid: int
  strides: int
  project: bool
  norms: _Norms

  @nn.compact
  def __call__(self, x):
    y, shortcut = _NormActConv(self.mid, 1, 1, self.norms,
                               proj_features=4 * self.mid if self.project else 0,
                               proj_strides=self.strides, name="a")(x)
    y, _ = _NormActConv(self.mid, 3, self.strides, self.norms, name="b")(y)
    y, _ = _NormActConv(4 * self.mid, 1, 1, self.norms, name="c")(y)
    return y + (x if shortcut is None else shortcut)


class _Block(nn.Module):
  """One stage (BiT's `blockN`): `units` units, the first projecting and striding."""
  units: int
  mid: int
  strides: int
  norms: _Norms

  @nn.compact
  def __call__(self, x):
    for i in range(self.units):
      x = _Unit(self.mid, self.strides if i == 0 else 1, i == 0, self.norms,
                name=f"unit{i + 1:02d}")(x)
    return x


class BiTResNetV2(nn.Module):
  """BiT ResNet-v2 (R50/R101/R152 × width); `num_classes=None` returns pooled features.

  Takes NHWC images in [-1, 1] (`input_spec`); returns float32 logits. Params
  are float32; `dtype` is the compute dtype of convs (GroupNorm statistics and
  the pooled features stay float32).
  """
  num_classes: Optional[int] = 1000
  stage_sizes: Sequence[int] = (3, 4, 6, 3)
  width: float = 1
  groups: int = 32
  gn_eps: float = 1e-5
  std_eps: float = 1e-8
  pool_padding: str = "zero"
  dtype: Any = jnp.float32

  @property
  def input_spec(self):
    return BIT_INPUT

  @nn.compact
  def __call__(self, x):
    if self.pool_padding not in POOL_PADDINGS:
      raise ValueError(f"pool_padding {self.pool_padding!r}: expected one of {POOL_PADDINGS}.")
    base = int(round(64 * self.width))
    x = jnp.asarray(x, self.dtype)
    x = _ConvScope(base, 7, 2, self.std_eps, self.dtype, name="root_block")(x)
    if self.pool_padding == "zero":      # BiT's released code: pad 1 with zeros, then VALID
      x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="VALID")
    else:                                # big_vision: padding never wins the max
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    norms = _Norms(self.groups, self.gn_eps, self.std_eps, self.dtype)
    for i, units in enumerate(self.stage_sizes):
      x = _Block(units, base * 2**i, 1 if i == 0 else 2, norms, name=f"block{i + 1}")(x)
    x = nn.relu(norms.group_norm()(x))
    x = jnp.mean(x.astype(jnp.float32), axis=(1, 2), keepdims=True)
    if self.num_classes is None:
      return x[:, 0, 0]
    head = _Head(self.num_classes, self.dtype, name="head")
    return head(x.astype(self.dtype))[:, 0, 0].astype(jnp.float32)


class _Head(nn.Module):
  """BiT's 1×1 conv head (`head/conv2d`) on the pooled 1×1 map."""
  num_classes: int
  dtype: Any

  @nn.compact
  def __call__(self, x):
    return nn.Conv(self.num_classes, (1, 1), dtype=self.dtype, name="conv2d")(x)


def _renamed(tensors):
  """Some BiT files number their convs (`standardized_conv2d_3`); use the plain name."""
  out = {}
  for key, value in tensors.items():
    plain = re.sub(r"/standardized_conv2d_\d+/", "/standardized_conv2d/", key)
    out[plain if plain not in tensors else key] = value
  return out


_BIG_VISION_UNIT = re.compile(
    r"(block\d+/unit\d+)/(conv[123]|gn[123]|conv_proj)/(kernel|scale|bias)$")
_GN_NAMES = {"scale": "gamma", "bias": "beta"}
_LAYERS = {"1": "a", "2": "b", "3": "c"}


def is_big_vision_layout(tensors):
  return bool({"root_block/conv_root/kernel", "params/root_block/conv_root/kernel"} & set(tensors))


def _original_key(name):
  """big_vision's name of one BiT tensor → (the original layout's name, drop broadcast axes),
  or None for a name it does not have."""
  if name == "root_block/conv_root/kernel":
    return PREFIX + "root_block/standardized_conv2d/kernel", False
  if name in ("norm-pre-head/scale", "norm-pre-head/bias"):
    return PREFIX + "group_norm/" + _GN_NAMES[name.rsplit("/", 1)[1]], True
  if name in ("head/kernel", "head/bias"):
    return PREFIX + "head/conv2d/" + name.rsplit("/", 1)[1], False
  unit = _BIG_VISION_UNIT.match(name)
  if not unit:
    return None
  where, layer, leaf = unit.groups()
  if layer == "conv_proj":
    return f"{PREFIX}{where}/a/proj/standardized_conv2d/kernel", False
  if layer.startswith("conv"):
    return f"{PREFIX}{where}/{_LAYERS[layer[-1]]}/standardized_conv2d/kernel", False
  if leaf not in _GN_NAMES:
    return None
  return f"{PREFIX}{where}/{_LAYERS[layer[-1]]}/group_norm/{_GN_NAMES[leaf]}", True


def from_big_vision_layout(tensors):
  """big_vision's BiT keys (a `params/` prefix allowed) renamed to the original npz layout.

  GroupNorm parameters lose their [1, 1, 1, C] broadcast axes and the Dense head
  becomes the 1×1 conv it is; a key this does not know keeps its name, so the
  loader names it as unused.
  """
  out = {}
  for key, value in tensors.items():
    name = key[len("params/"):] if key.startswith("params/") else key
    known = _original_key(name)
    if known is None:
      out[key] = value
      continue
    new, flatten = known
    if flatten:
      value = value.reshape(-1)
    elif new.endswith("head/conv2d/kernel") and value.ndim == 2:
      value = value.reshape(1, 1, *value.shape)
    out[new] = value
  return out


def file_architecture(tensors, path):
  """(units per stage, width factor or None, classes or None) that a BiT npz's tensors imply."""
  keys = [k for k in tensors if k.startswith(PREFIX)]
  if not keys:
    raise weight_files.WeightFileError(
        f"{str(path)!r} has neither {PREFIX!r} tensors nor big_vision's root_block/conv_root, "
        "so it is not a BiT npz "
        f"(its keys: {', '.join(sorted(tensors)[:3]) or 'none'}).")
  stages = []
  for block in itertools.count(1):
    pattern = re.compile(rf"{PREFIX}block{block}/unit(\d+)/")
    units = {int(m.group(1)) for m in map(pattern.match, keys) if m}
    if not units:
      break
    if units != set(range(1, max(units) + 1)):
      raise weight_files.WeightFileError(
          f"{str(path)!r}: block{block} has units {sorted(units)}, not 1..{max(units)}.")
    stages.append(max(units))
  root = tensors.get(PREFIX + "root_block/standardized_conv2d/kernel")
  width = root.shape[-1] / 64 if root is not None and root.ndim == 4 else None
  head = tensors.get(PREFIX + "head/conv2d/bias")
  return tuple(stages), width, (int(head.shape[-1]) if head is not None else None)


def _npz_key(flax_path):
  """`block1/unit01/a/group_norm/scale` → `resnet/block1/unit01/a/group_norm/gamma`."""
  parts = flax_path.split("/")
  if parts[-2] == "group_norm":
    parts[-1] = {"scale": "gamma", "bias": "beta"}[parts[-1]]
  return PREFIX + "/".join(parts)


def _name(stages, width):
  return f"R{depth_of(stages)}x{width:g} (units per stage {tuple(stages)})"


def load_bit_npz(path, depth=None, width=None, num_classes=None, **model_kwargs):
  """(BiTResNetV2, {'params': ...}) from a BiT `.npz` in either layout (e.g. BiT-M-R152x2.npz).

  depth: 50 / 101 / 152 or units per stage; width: the width factor (1..4);
  num_classes: the head's size. Each left None is read from the file; each
  given must agree with the file, else the error names both architectures.
  `model_kwargs` go to the module (dtype, pool_padding, std_eps, ...).
  """
  tensors = weight_files.read_npz(path)
  if is_big_vision_layout(tensors):
    tensors = from_big_vision_layout(tensors)
    model_kwargs.setdefault("pool_padding", "-inf")
    model_kwargs.setdefault("std_eps", 1e-10)
  tensors = _renamed(tensors)
  found_stages, found_width, found_classes = file_architecture(tensors, path)
  stages = found_stages if depth is None else stage_sizes_of(depth)
  if stages != found_stages:
    raise weight_files.WeightFileError(
        f"{str(path)!r} holds BiT {_name(found_stages, found_width or 0)}, not the requested "
        f"R{depth_of(stages)} {stages}.")
  if width is None:
    if found_width is None:
      raise weight_files.WeightFileError(
          f"{str(path)!r} has no {PREFIX}root_block/standardized_conv2d/kernel to read the "
          "width factor from.")
    width = found_width
  elif found_width is not None and not math.isclose(width, found_width):
    raise weight_files.WeightFileError(
        f"{str(path)!r} holds BiT {_name(found_stages, found_width)}, not the requested width "
        f"{width:g} (its root conv has {int(found_width * 64)} channels).")
  if num_classes is None:
    num_classes = found_classes
  elif found_classes is not None and num_classes != found_classes:
    raise weight_files.WeightFileError(
        f"{str(path)!r} has a {found_classes}-class head, not the requested {num_classes}.")
  model = BiTResNetV2(num_classes, stages, width, **model_kwargs)
  expected = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))["params"]
  reader = weight_files.TensorReader(tensors, path)
  flat = {p: reader(_npz_key(p), shape=leaf.shape)
          for p, leaf in traverse_util.flatten_dict(expected, sep="/").items()}
  return model, {"params": weight_files.finish(reader, flat, expected, path)}
