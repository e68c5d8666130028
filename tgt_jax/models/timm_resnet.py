"""timm's BatchNorm ResNets (resnet18/34/50/101/152) as labelers, loaded from `model.safetensors`.

A labeler must not mix examples (exploration differentiates each synthetic
example through it on its own), so BatchNorm runs in inference mode only:
running statistics, kept in the `batch_stats` collection and never updated.
The Flax tree mirrors timm's state-dict names (`layer1.0.bn1.running_var` ↔
batch_stats `layer1/0/bn1/var`), so loading is a renaming checked tensor by
tensor; `num_batches_tracked` is ignored.

Architecture as timm builds it: 7×7/2 stem conv + BN + ReLU + 3×3/2 max-pool
(padding never wins the max); basic blocks (3×3, 3×3) or bottlenecks (1×1,
3×3 carrying the stride, 1×1 ×4); a 1×1 conv + BN shortcut where the shape
changes; global average pool; `fc`. BatchNorm eps 1e-5.

Input (`TIMM_INPUT`): `__call__` takes NHWC images with pixels in [-1, 1] and
applies timm's ImageNet normalisation itself ((x01 - mean) / std with
x01 = (x + 1) / 2), so every labeler of a teacher takes the same range;
`preprocess` maps other ranges (e.g. [0, 1]) there and resizes to 224 px.
"""

import dataclasses
import re
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import traverse_util

from tgt_jax.models import weight_files
from tgt_jax.models.input_spec import InputSpec

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TIMM_INPUT = InputSpec(resolution=224, value_range=(-1.0, 1.0), mean=IMAGENET_MEAN,
                       std=IMAGENET_STD)
BN_EPS = 1e-5

# name: (bottleneck, blocks per stage), as timm registers them.
ARCHS = {
    "resnet18": (False, (2, 2, 2, 2)),
    "resnet34": (False, (3, 4, 6, 3)),
    "resnet50": (True, (3, 4, 6, 3)),
    "resnet101": (True, (3, 4, 23, 3)),
    "resnet152": (True, (3, 8, 36, 3)),
}


def preprocess(images, source_range=(0.0, 1.0), resize=True):
  """Images in `source_range` → what `TimmResNet.__call__` takes ([-1, 1], 224 px)."""
  return TIMM_INPUT.prepare(images, source_range, resize)


def _bn(name, dtype):
  return nn.BatchNorm(use_running_average=True, epsilon=BN_EPS, dtype=dtype, name=name)


def _conv(features, kernel, strides, name, dtype):
  pad = (kernel - 1) // 2
  return nn.Conv(features, (kernel, kernel), strides=strides, padding=((pad, pad), (pad, pad)),
                 use_bias=False, dtype=dtype, name=name)


class _Downsample(nn.Module):
  """timm's `downsample` Sequential: 1×1 conv (`0`) then BatchNorm (`1`)."""
  features: int
  strides: int
  dtype: Any

  @nn.compact
  def __call__(self, x):
    x = _conv(self.features, 1, self.strides, "0", self.dtype)(x)
    return _bn("1", self.dtype)(x)


@dataclasses.dataclass(frozen=True)
class _BlockKind:
  """What every block of one network shares: basic or bottleneck, bottleneck width, dtype."""
  bottleneck: bool
  base_width: int
  dtype: Any


class _Block(nn.Module):
  """BasicBlock (conv1 3×3, conv2 3×3) or Bottleneck (conv1 1×1, conv2 3×3 strided, conv3 1×1)."""
  planes: int
  strides: int
  kind: _BlockKind

  @nn.compact
  def __call__(self, x):
    kind = self.kind
    if kind.bottleneck:
      mid = int(self.planes * kind.base_width / 64)
      out = self.planes * 4
      layers = [(mid, 1, 1), (mid, 3, self.strides), (out, 1, 1)]
    else:
      out = self.planes
      layers = [(out, 3, self.strides), (out, 3, 1)]
    shortcut = x
    if self.strides != 1 or x.shape[-1] != out:
      shortcut = _Downsample(out, self.strides, kind.dtype, name="downsample")(x)
    y = x
    for i, (features, kernel, strides) in enumerate(layers, 1):
      y = _conv(features, kernel, strides, f"conv{i}", kind.dtype)(y)
      y = _bn(f"bn{i}", kind.dtype)(y)
      if i < len(layers):
        y = nn.relu(y)
    return nn.relu(y + shortcut)


class _Layer(nn.Module):
  """One stage (timm's `layerN`), blocks named `0`, `1`, ..."""
  blocks: int
  planes: int
  strides: int
  kind: _BlockKind

  @nn.compact
  def __call__(self, x):
    for i in range(self.blocks):
      x = _Block(self.planes, self.strides if i == 0 else 1, self.kind, name=str(i))(x)
    return x


class TimmResNet(nn.Module):
  """timm's ResNet in inference mode; `num_classes=None` returns the pooled features.

  `channels` are the stages' planes (timm's `channels`), `base_width` the
  bottleneck width per 64 planes (wide_resnet*: 128). Takes NHWC images in
  [-1, 1] (`input_spec`), returns float32 logits.
  Variables: `params` (float32) and `batch_stats` (running mean / var);
  `dtype` is the compute dtype.
  """
  num_classes: Optional[int] = 1000
  stage_sizes: Sequence[int] = (3, 4, 6, 3)
  bottleneck: bool = True
  channels: Sequence[int] = (64, 128, 256, 512)
  base_width: int = 64
  dtype: Any = jnp.float32

  @property
  def input_spec(self):
    return TIMM_INPUT

  @nn.compact
  def __call__(self, x):
    x = TIMM_INPUT.normalize(jnp.asarray(x, jnp.float32)).astype(self.dtype)
    x = _conv(64, 7, 2, "conv1", self.dtype)(x)     # timm's plain stem is always 64 wide
    x = nn.relu(_bn("bn1", self.dtype)(x))
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))   # pads with -inf
    kind = _BlockKind(self.bottleneck, self.base_width, self.dtype)
    for i, (blocks, planes) in enumerate(zip(self.stage_sizes, self.channels)):
      x = _Layer(blocks, planes, 1 if i == 0 else 2, kind, name=f"layer{i + 1}")(x)
    x = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
    if self.num_classes is None:
      return x
    return nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(x).astype(jnp.float32)


def model_for(arch, num_classes=1000, dtype=jnp.float32):
  """A TimmResNet for a timm name ('resnet50') or a dict of TimmResNet fields."""
  if isinstance(arch, str):
    if arch not in ARCHS:
      raise ValueError(f"Unknown timm ResNet {arch!r}; known: {sorted(ARCHS)}.")
    bottleneck, stages = ARCHS[arch]
    return TimmResNet(num_classes, stages, bottleneck, dtype=dtype)
  return TimmResNet(num_classes, dtype=dtype, **dict(arch))


def _state_key(collection, flax_path):
  """('params', 'layer1/0/bn1/scale') → 'layer1.0.bn1.weight' (timm's state-dict name)."""
  *parents, leaf = flax_path.split("/")
  if collection == "batch_stats":
    leaf = {"mean": "running_mean", "var": "running_var"}[leaf]
  else:
    leaf = {"kernel": "weight", "scale": "weight", "bias": "bias"}[leaf]
  return ".".join(parents + [leaf])


def _transform(flax_path, shape):
  if flax_path.endswith("kernel"):
    return weight_files.conv_kernel if len(shape) == 4 else weight_files.linear_kernel
  return None


def file_architecture(tensors):
  """(bottleneck or None, blocks per stage, classes or None) that a state dict implies."""
  stages = []
  for layer in range(1, 5):
    pattern = re.compile(rf"layer{layer}\.(\d+)\.")
    blocks = {int(m.group(1)) for m in map(pattern.match, tensors) if m}
    if not blocks:
      break
    stages.append(max(blocks) + 1)
  bottleneck = ("layer1.0.conv3.weight" in tensors) if "layer1.0.conv1.weight" in tensors else None
  head = tensors.get("fc.bias")
  return bottleneck, tuple(stages), (int(head.shape[-1]) if head is not None else None)


def load_timm_safetensors(path, arch, num_classes=None, dtype=jnp.float32):
  """(TimmResNet, {'params', 'batch_stats'}) from timm's `model.safetensors`.

  arch: 'resnet18' / 'resnet34' / 'resnet50' / 'resnet101' / 'resnet152', or a
  dict of TimmResNet fields; num_classes: None reads it from `fc`. A file of
  another block type, depth or class count is refused, naming both.
  """
  tensors = weight_files.read_safetensors(path)
  model = model_for(arch, 1000 if num_classes is None else num_classes, dtype)
  bottleneck, stages, classes = file_architecture(tensors)
  kind = lambda b: "bottleneck" if b else "basic"   # pylint: disable=unnecessary-lambda-assignment
  if bottleneck is not None and bottleneck != model.bottleneck:
    raise weight_files.WeightFileError(
        f"{str(path)!r} holds a ResNet of {kind(bottleneck)} blocks, but {arch!r} has "
        f"{kind(model.bottleneck)} blocks.")
  if stages and stages != tuple(model.stage_sizes):
    raise weight_files.WeightFileError(
        f"{str(path)!r} holds a ResNet with {stages} blocks per stage, but {arch!r} has "
        f"{tuple(model.stage_sizes)}.")
  if num_classes is None and classes is not None:
    model = model.clone(num_classes=classes)
  elif classes is not None and classes != num_classes:
    raise weight_files.WeightFileError(
        f"{str(path)!r} has a {classes}-class fc head, not the requested {num_classes}.")
  expected = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
  expected = {k: expected[k] for k in ("params", "batch_stats")}
  reader = weight_files.TensorReader(tensors, path, ignore=("num_batches_tracked",))
  variables = {}
  for collection, tree in expected.items():
    flat = {}
    for name, leaf in traverse_util.flatten_dict(tree, sep="/").items():
      flat[name] = reader(_state_key(collection, name), _transform(name, leaf.shape))
    variables[collection] = flat
  reader.finish()
  variables = {k: weight_files.unflatten(v) for k, v in variables.items()}
  weight_files.check_shapes(variables, expected, path)
  return model, variables
