"""timm's plain BatchNorm ResNets as labelers, loaded from `model.safetensors` (+ `config.json`).

A labeler must not mix examples (exploration differentiates each synthetic
example through it on its own), so BatchNorm runs in inference mode only:
running statistics, kept in the `batch_stats` collection and never updated.
The Flax tree mirrors timm's state-dict names (`layer1.0.bn1.running_var` ↔
batch_stats `layer1/0/bn1/var`), so loading is a renaming checked tensor by
tensor; `num_batches_tracked` is ignored.

Architecture as timm builds its plain ResNets: 7×7/2 stem conv (64 wide) + BN +
ReLU + 3×3/2 max-pool (padding never wins the max); basic blocks (3×3, 3×3) or
bottlenecks (1×1, 3×3 carrying the stride, 1×1 ×4); a 1×1 conv + BN shortcut
where the shape changes; global average pool; `fc`. BatchNorm eps 1e-5.
`ARCHS` are timm's names with that stem and shortcut; its c/d/s/t variants
(deep 3×3 stems, average-pool shortcuts) are refused by name, and any plain one
can be given as 'resnet:BLOCK:N1,N2,N3,N4' (BLOCK basic or bottleneck, Ni blocks
per stage). Given by name or so, the stage widths are read from the file.

Input: `__call__` takes NHWC images with pixels in [-1, 1] and normalises them
itself ((x01 - mean) / std with x01 = (x + 1) / 2), so every labeler of a
teacher takes the same range. mean, std and the input size are the file's
own: timm publishes them in `config.json` (`pretrained_cfg`) next to
`model.safetensors`, and `published_input` reads them (ImageNet's and 224 px
when there is none); `preprocess` maps other ranges there and resizes.
"""

import dataclasses
import re
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from etils import epath
from flax import traverse_util

from tgt_jax.models import weight_files
from tgt_jax.models.input_spec import InputSpec

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TIMM_INPUT = InputSpec(resolution=224, value_range=(-1.0, 1.0), mean=IMAGENET_MEAN,
                       std=IMAGENET_STD)
BN_EPS = 1e-5
CONFIG_FILE = "config.json"

# timm's plain ResNets: name → (bottleneck, blocks per stage, bottleneck width per 64 planes).
ARCHS = {
    "resnet18": (False, (2, 2, 2, 2), 64),
    "resnet26": (True, (2, 2, 2, 2), 64),
    "resnet34": (False, (3, 4, 6, 3), 64),
    "resnet50": (True, (3, 4, 6, 3), 64),
    "resnet101": (True, (3, 4, 23, 3), 64),
    "resnet152": (True, (3, 8, 36, 3), 64),
    "resnet200": (True, (3, 24, 36, 3), 64),
    "wide_resnet50_2": (True, (3, 4, 6, 3), 128),
    "wide_resnet101_2": (True, (3, 4, 23, 3), 128),
}
# What timm's lettered ResNets change, which TimmResNet does not build.
_VARIANTS = {
    "c": "a deep stem (three 3×3 convs, 32-32-64 wide)",
    "d": "a deep stem (three 3×3 convs, 32-32-64 wide) and average-pool shortcuts",
    "s": "a deep stem (three 3×3 convs, 64-64-128 wide)",
    "t": "a tiered deep stem (three 3×3 convs, 24-32-64 wide) and average-pool shortcuts",
}
_SPEC = re.compile(r"^resnet:(basic|bottleneck):(\d+),(\d+),(\d+),(\d+)$")
ARCH_HELP = (f"one of {list(ARCHS)}, or 'resnet:basic:N1,N2,N3,N4' / "
             "'resnet:bottleneck:N1,N2,N3,N4' (blocks per stage, each >= 1)")


def parse_arch(arch):
  """(TimmResNet fields, widths_from_file) of a timm name, a 'resnet:BLOCK:N,N,N,N' spec or a
  dict of fields (taken as given). Anything else raises one line saying what is accepted."""
  if isinstance(arch, dict):
    return dict(arch), False
  if not isinstance(arch, str):
    raise ValueError(f"timm ResNet architecture {arch!r}: give {ARCH_HELP}.")
  if arch in ARCHS:
    bottleneck, stages, base_width = ARCHS[arch]
    return dict(bottleneck=bottleneck, stage_sizes=stages, base_width=base_width), True
  spec = _SPEC.match(arch.replace(" ", ""))
  if spec and all(int(n) >= 1 for n in spec.groups()[1:]):
    stages = tuple(int(n) for n in spec.groups()[1:])
    return dict(bottleneck=spec.group(1) == "bottleneck", stage_sizes=stages), True
  variant = re.match(r"^resnet(\d+)([cdst])$", arch)
  if variant and variant.group(2) in _VARIANTS:
    raise ValueError(f"timm's {arch!r} has {_VARIANTS[variant.group(2)]}, which TimmResNet does "
                     f"not build; it builds the plain stem and shortcuts: {ARCH_HELP}.")
  if arch in ("resnet10", "resnet14"):
    raise ValueError(f"timm registers no plain {arch!r} (its {arch}t has "
                     f"{_VARIANTS['t']}); give {ARCH_HELP}.")
  raise ValueError(f"Unknown timm ResNet {arch!r}; give {ARCH_HELP}.")


def preprocess(images, source_range=(0.0, 1.0), resize=True, spec=TIMM_INPUT):
  """Images in `source_range` → what `TimmResNet.__call__` takes ([-1, 1], `spec`'s size)."""
  return spec.prepare(images, source_range, resize)


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
  [-1, 1] and normalises them with `input_spec`'s mean and std (the published
  config's); returns float32 logits.
  Variables: `params` (float32) and `batch_stats` (running mean / var);
  `dtype` is the compute dtype.
  """
  num_classes: Optional[int] = 1000
  stage_sizes: Sequence[int] = (3, 4, 6, 3)
  bottleneck: bool = True
  channels: Sequence[int] = (64, 128, 256, 512)
  base_width: int = 64
  dtype: Any = jnp.float32
  input_spec: InputSpec = TIMM_INPUT

  @nn.compact
  def __call__(self, x):
    x = self.input_spec.normalize(jnp.asarray(x, jnp.float32)).astype(self.dtype)
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
  """A TimmResNet at timm's published widths for a name ('resnet50'), a 'resnet:BLOCK:N,N,N,N'
  spec, or a dict of TimmResNet fields."""
  fields, _ = parse_arch(arch)
  return TimmResNet(num_classes, dtype=dtype, **fields)


@dataclasses.dataclass(frozen=True)
class PublishedInput:
  """What a timm file's config.json says its network was trained on, and where each came from.

  interpolation and crop_pct are recorded, not applied: a teacher labels the student's
  whole image (already the data pipeline's crop), resized bilinearly like every labeler's.
  """
  spec: InputSpec
  sources: dict                 # {"resolution" | "mean" | "std": the file or the default used}
  architecture: Optional[str] = None
  num_classes: Optional[int] = None
  interpolation: Optional[str] = None
  crop_pct: Optional[float] = None


def config_path(weights_path):
  """timm's config.json beside `model.safetensors` (hub repositories publish both)."""
  return epath.Path(weights_path).parent / CONFIG_FILE


_DEFAULTS = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD,
             "input_size": (3, TIMM_INPUT.resolution, TIMM_INPUT.resolution)}


def _checked(path, key, value):
  """A pretrained_cfg value as tgt_jax uses it (input_size → its side), or an error naming it."""
  if key == "input_size":
    if (isinstance(value, (list, tuple)) and len(value) == 3 and value[0] == 3 and
        isinstance(value[1], int) and value[1] >= 1 and value[1] == value[2]):
      return value[1]
    raise weight_files.WeightFileError(
        f"{str(path)!r}: pretrained_cfg.input_size = {value!r}; tgt_jax's labelers take square "
        "RGB input, [3, S, S].")
  if (isinstance(value, (list, tuple)) and len(value) == 3 and
      all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value) and
      (key != "std" or min(value) > 0)):
    return tuple(float(v) for v in value)
  raise weight_files.WeightFileError(
      f"{str(path)!r}: pretrained_cfg.{key} = {value!r} is not three numbers (one per RGB "
      "channel" + (", each > 0)." if key == "std" else ")."))


def published_input(weights_path):
  """PublishedInput of the config.json next to `weights_path`; ImageNet's mean and std at
  224 px where there is none (or a key is absent). A value tgt_jax cannot use is named."""
  path = config_path(weights_path)
  if not path.exists():
    default = "timm's ImageNet default (no config.json beside the weights)"
    return PublishedInput(TIMM_INPUT, dict.fromkeys(("resolution", "mean", "std"), default))
  config = weight_files.read_json(path)
  cfg = config.get("pretrained_cfg", config) if isinstance(config, dict) else None
  if not isinstance(cfg, dict):      # old single-dict configs hold pretrained_cfg's keys on top
    raise weight_files.WeightFileError(f"{str(path)!r}: no pretrained_cfg JSON object.")
  values, sources = {}, {}
  for key, default in _DEFAULTS.items():
    given = cfg.get(key)
    values[key] = _checked(path, key, default if given is None else given)
    sources["resolution" if key == "input_size" else key] = (
        str(path) if given is not None else f"timm's ImageNet default ({str(path)!r} has no {key})")
  spec = InputSpec(resolution=values["input_size"], value_range=TIMM_INPUT.value_range,
                   mean=values["mean"], std=values["std"])
  return PublishedInput(spec, sources, config.get("architecture", cfg.get("architecture")),
                        config.get("num_classes", cfg.get("num_classes")),
                        cfg.get("interpolation"), cfg.get("crop_pct"))


def _state_key(collection, flax_path):
  """('params', 'layer1/0/bn1/scale') → 'layer1.0.bn1.weight' (timm's state-dict name)."""
  *parents, leaf = flax_path.split("/")
  if collection == "batch_stats":
    leaf = {"mean": "running_mean", "var": "running_var"}[leaf]
  else:
    leaf = {"kernel": "weight", "scale": "weight", "bias": "bias"}[leaf]
  return ".".join(parents + [leaf])


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


def file_widths(tensors, bottleneck, stages):
  """{'channels', 'base_width'} of a state dict's first block in each stage, or {} if a
  tensor needed is absent (the loader then names the missing keys)."""
  last = "conv3" if bottleneck else "conv2"
  keys = [f"layer{i}.0.{last}.weight" for i in range(1, len(stages) + 1)]
  if not stages or not all(k in tensors and tensors[k].ndim == 4 for k in keys):
    return {}
  channels = tuple(int(tensors[k].shape[0]) // (4 if bottleneck else 1) for k in keys)
  widths = {"channels": channels}
  first = tensors.get("layer1.0.conv1.weight")
  if bottleneck and first is not None and channels[0]:
    widths["base_width"] = int(first.shape[0]) * 64 // channels[0]
  return widths


def _architecture(path, arch, published):
  """The arch to build: the caller's, else config.json's; they must agree when both name one."""
  if arch is None:
    if not published.architecture:
      raise ValueError(f"A timm labeler needs its architecture: {str(path)!r} has no "
                       f"config.json naming one, so give it (e.g. arch='resnet50'): {ARCH_HELP}.")
    return published.architecture
  if (isinstance(arch, str) and arch in ARCHS and published.architecture
      and published.architecture != arch):
    raise weight_files.WeightFileError(
        f"{str(config_path(path))!r} names architecture {published.architecture!r}, not the "
        f"requested {arch!r}.")
  return arch


def load_timm_safetensors(path, arch=None, num_classes=None, dtype=jnp.float32):
  """(TimmResNet, {'params', 'batch_stats'}) from timm's `model.safetensors` (F32, F16 or
  BF16 in the file; the params come out float32).

  arch: a name in ARCHS, 'resnet:BLOCK:N,N,N,N', a dict of TimmResNet fields, or None
  for config.json's `architecture`; num_classes: None reads it from `fc`. A file of
  another block type, depth or class count is refused, naming both. The input spec
  (mean, std, size) is config.json's when the file has one beside it.
  """
  tensors = weight_files.read_safetensors(path)
  published = published_input(path)
  arch = _architecture(path, arch, published)
  fields, widths_from_file = parse_arch(arch)
  model = TimmResNet(1000 if num_classes is None else num_classes, dtype=dtype,
                     input_spec=published.spec, **fields)
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
  if classes is not None and published.num_classes not in (None, classes):
    raise weight_files.WeightFileError(
        f"{str(config_path(path))!r} says num_classes = {published.num_classes}, but the fc "
        f"head of {str(path)!r} has {classes}.")
  if num_classes is None and classes is not None:
    model = model.clone(num_classes=classes)
  elif classes is not None and classes != num_classes:
    raise weight_files.WeightFileError(
        f"{str(path)!r} has a {classes}-class fc head, not the requested {num_classes}.")
  if widths_from_file:
    model = model.clone(**file_widths(tensors, model.bottleneck, stages))
  expected = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
  expected = {k: expected[k] for k in ("params", "batch_stats")}
  reader = weight_files.TensorReader(tensors, path, ignore=("num_batches_tracked",))
  variables = {}
  for collection, tree in expected.items():
    flat = {}
    for name, leaf in traverse_util.flatten_dict(tree, sep="/").items():
      layout = weight_files.pytorch_layout(leaf.shape, name.rsplit("/", 1)[-1])
      flat[name] = reader(_state_key(collection, name), layout, shape=leaf.shape)
    variables[collection] = flat
  reader.finish()
  variables = {k: weight_files.unflatten(v) for k, v in variables.items()}
  weight_files.check_shapes(variables, expected, path)
  return model, variables
