"""Reading published weight files (safetensors, npz, config.json) into Flax parameter trees.

Published checkpoints come in other frameworks' layouts: PyTorch names and OIHW
kernels (diffusers, timm) or TensorFlow names and HWIO kernels (BiT's npz). A
converter walks the Flax tree it wants and asks a `TensorReader` for each source
tensor by name, with the shape the module wants; the reader records what was asked
for, so one `finish()` reports every missing key and every unused one together, then
the first tensor whose shape does not fit, named as the file stores it (its key, its
stored shape, and the shape the model wants in the file's layout: a user compares
those with the file, not with Flax's transposed names). `check_shapes` then checks
the tree's structure against the module's.

safetensors are parsed here (an 8-byte header length, a JSON header, raw little-endian
data), not by safetensors' numpy API, which knows no bfloat16: recent releases are
published in BF16. Every dtype numpy or ml_dtypes has is read in its stored dtype
(BF16 as ml_dtypes.bfloat16, I64 for position ids and BatchNorm counters, ...);
the reader hands every parameter over as float32 and refuses an integer, bool or
complex tensor where the model wants a parameter. The 4- and 6-bit floats, packed
below a byte, and names safetensors may add later are refused by name. Files are read
with numpy only (no torch, no TensorFlow), from local paths or any path etils
understands (gs://).
"""

import dataclasses
import io
import json
import math
from typing import Tuple

import jax
import ml_dtypes
import numpy as np
from etils import epath

SHOWN = 5            # how many missing / unused keys an error names


class WeightFileError(ValueError):
  """A weight or config file that exists but cannot be used; the message names the file."""


def _existing(path):
  path = epath.Path(path)
  if not path.exists():
    raise FileNotFoundError(f"Weight file {str(path)!r} does not exist.")
  return path


def read_json(path):
  path = _existing(path)
  try:
    return json.loads(path.read_text())
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise WeightFileError(f"{str(path)!r} is not valid JSON: {e}") from None


# safetensors' dtype names → numpy's (ml_dtypes' for the narrow floats). All little-endian.
_FLOAT_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
    "F8_E4M3": ml_dtypes.float8_e4m3fn, "F8_E5M2": ml_dtypes.float8_e5m2,
    "F8_E4M3FNUZ": ml_dtypes.float8_e4m3fnuz, "F8_E5M2FNUZ": ml_dtypes.float8_e5m2fnuz,
    "F8_E8M0": ml_dtypes.float8_e8m0fnu,
}
SAFETENSORS_DTYPES = dict(
    _FLOAT_DTYPES, I64=np.int64, I32=np.int32, I16=np.int16, I8=np.int8, U64=np.uint64,
    U32=np.uint32, U16=np.uint16, U8=np.uint8, BOOL=np.bool_, C64=np.complex64)
_FLOATS = {np.dtype(t) for t in _FLOAT_DTYPES.values()}
# Packed below a byte (two F4 per byte, ...): numpy has no such layout to view them in.
_PACKED = ("F4", "F6_E2M3", "F6_E3M2")


class _Unreadable(Exception):
  """A safetensors file whose structure is broken (truncated, or not safetensors at all)."""


def _tensor(data, start, name, info):
  """One header entry's array, a view into `data` (the file's bytes)."""
  try:
    dtype, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
    if not all(isinstance(v, int) and v >= 0 for v in (*shape, begin, end)):
      raise ValueError
  except (KeyError, TypeError, ValueError):
    raise _Unreadable(f"tensor {name!r} has a malformed header entry {info!r}") from None
  if dtype not in SAFETENSORS_DTYPES:
    return dtype
  count = math.prod(shape)
  numpy_dtype = np.dtype(SAFETENSORS_DTYPES[dtype]).newbyteorder("<")
  if end - begin != count * numpy_dtype.itemsize:
    raise _Unreadable(f"tensor {name!r} ({dtype} {tuple(shape)}) has data_offsets "
                      f"[{begin}, {end}], not {count * numpy_dtype.itemsize} bytes")
  if start + end > len(data):
    raise _Unreadable(f"tensor {name!r}'s data ends at byte {start + end}, past the file's end")
  return np.frombuffer(data, numpy_dtype, count, start + begin).reshape(shape)


def parse_safetensors(data, path="<bytes>"):
  """{name: np.ndarray} of a safetensors file's bytes, each array in its stored dtype."""
  try:
    if len(data) < 8:
      raise _Unreadable("shorter than the 8-byte header length")
    size = int.from_bytes(data[:8], "little")
    if 8 + size > len(data):
      raise _Unreadable(f"a {size}-byte header runs past the file's end")
    try:
      header = json.loads(data[8:8 + size].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
      raise _Unreadable(f"the header is not JSON ({e})") from None
    if not isinstance(header, dict):
      raise _Unreadable("the header is not a JSON object")
    header.pop("__metadata__", None)
    tensors = {name: _tensor(data, 8 + size, name, info) for name, info in header.items()}
  except _Unreadable as e:
    raise WeightFileError(f"{str(path)!r} is not a readable safetensors file "
                          f"({len(data)} bytes; truncated?): {e}.") from None
  for name, value in tensors.items():
    if isinstance(value, str):
      why = "packed below a byte" if value in _PACKED else "unknown to tgt_jax"
      raise WeightFileError(f"{str(path)!r}: tensor {name!r} is stored as {value} ({why}); "
                            f"tgt_jax reads {', '.join(SAFETENSORS_DTYPES)}.")
  return tensors


def read_safetensors(path):
  """{name: np.ndarray} of a .safetensors file in the stored dtypes (BF16 included); a
  truncated or foreign file, or a tensor of an unreadable dtype, is named."""
  path = _existing(path)
  return parse_safetensors(path.read_bytes(), path)


def read_npz(path):
  """{name: np.ndarray} of an .npz file, e.g. BiT's published weights."""
  path = _existing(path)
  data = path.read_bytes()
  try:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
      return {k: npz[k] for k in npz.files}
  except Exception as e:  # pylint: disable=broad-except  (zipfile and numpy errors vary)
    raise WeightFileError(f"{str(path)!r} is not a readable npz file "
                          f"({len(data)} bytes; truncated?): {type(e).__name__}: {e}") from None


def read_weights(path):
  """safetensors or npz, by the file's suffix."""
  name = str(path)
  if name.endswith(".safetensors"):
    return read_safetensors(path)
  if name.endswith(".npz"):
    return read_npz(path)
  raise WeightFileError(f"{name!r}: expected a .safetensors or .npz weight file.")


def _listing(keys):
  keys = sorted(keys)
  more = f" and {len(keys) - SHOWN} more" if len(keys) > SHOWN else ""
  return ", ".join(keys[:SHOWN]) + more


class TensorReader:
  """Source tensors by name, remembering which were used, which were missing and which
  did not have the shape the model wants."""

  def __init__(self, tensors, path, ignore=()):
    self.tensors, self.path = tensors, str(path)
    self._ignored = {k for k in tensors if any(k.endswith(s) for s in ignore)}
    self._used, self._missing, self._misshapen = set(), [], []

  def has(self, key):
    return key in self.tensors

  def __call__(self, key, transform=None, shape=None):
    """The tensor `key` as float32 numpy (after `transform`), or a placeholder if missing.

    shape: the model's shape for it (after `transform`); a tensor that does not
    convert to it is reported by `finish()` under its stored name and shape.
    """
    if key not in self.tensors:
      self._missing.append(key)
      return None
    self._used.add(key)
    stored = np.asarray(self.tensors[key])
    if stored.dtype.newbyteorder("=") not in _FLOATS:
      raise WeightFileError(f"{self.path!r}: tensor {key!r} is stored as {stored.dtype}, but the "
                            "model reads it as a floating-point parameter (a quantised file?).")
    value = stored.astype(np.float32)
    value = transform(value) if transform is not None else value
    if shape is not None and tuple(value.shape) != tuple(shape):
      self._misshapen.append((key, stored.shape, shape, transform))
    return value

  def finish(self):
    """Raises one error naming the missing keys and the keys nothing read, else one naming
    the tensors whose shapes do not fit (the first as stored, and how many)."""
    unused = set(self.tensors) - self._used - self._ignored
    if self._missing or unused:
      parts = []
      if self._missing:
        parts.append(f"{len(self._missing)} key(s) missing: {_listing(self._missing)}")
      if unused:
        parts.append(f"{len(unused)} key(s) not used by the model: {_listing(unused)}")
      raise WeightFileError(f"{self.path!r} does not match the model: {'; '.join(parts)}. "
                            "Is it a checkpoint of this architecture and config?")
    if self._misshapen:
      key, stored, shape, transform = self._misshapen[0]
      stored_layout = getattr(transform, "stored_shape", None)
      want = (f"{stored_layout(shape)} {transform.layout}" if stored_layout is not None else
              f"{tuple(shape)}" + (" after conversion" if transform is not None else ""))
      more = (f" ({len(self._misshapen) - 1} more tensor(s) misshapen too)"
              if len(self._misshapen) > 1 else "")
      raise WeightFileError(f"{self.path!r}: tensor {key} has shape {tuple(stored)} in the "
                            f"file, the model expects {want}{more}. Is it a checkpoint of this "
                            "architecture and config?")


@dataclasses.dataclass(frozen=True)
class Transpose:
  """A PyTorch layout → Flax's by permuting axes; `stored_shape` inverts it on shapes, so a
  misfit names the shape the file should have held. A tensor of another rank passes
  through unchanged, for the reader to name."""
  axes: Tuple[int, ...]
  layout: str
  squeeze_1x1: bool = False    # a Linear weight some files store as a 1×1 conv [O, I, 1, 1]

  def __call__(self, value):
    if self.squeeze_1x1 and value.ndim == 4 and value.shape[2:] == (1, 1):
      value = value[:, :, 0, 0]
    return np.transpose(value, self.axes) if value.ndim == len(self.axes) else value

  def stored_shape(self, shape):
    stored = [0] * len(self.axes)
    for flax_axis, stored_axis in enumerate(self.axes):
      stored[stored_axis] = shape[flax_axis]
    return tuple(stored)


# PyTorch's Conv2d weight [O, I, H, W] → Flax's [H, W, I, O].
conv_kernel = Transpose((2, 3, 1, 0), "[O, I, H, W]")
# PyTorch's Linear weight [out, in] (or a 1×1 conv's [out, in, 1, 1]) → Flax's Dense [in, out].
linear_kernel = Transpose((1, 0), "[out, in]", squeeze_1x1=True)


def pytorch_layout(flax_shape, leaf="kernel"):
  """The Transpose from a PyTorch state dict's tensor to a Flax kernel of `flax_shape`."""
  if leaf != "kernel":
    return None
  return {4: conv_kernel, 2: linear_kernel}.get(len(flax_shape))


def unflatten(flat, sep="/"):
  """{'a/b/c': x} → {'a': {'b': {'c': x}}}."""
  tree = {}
  for key, value in flat.items():
    node = tree
    *parents, leaf = key.split(sep)
    for name in parents:
      node = node.setdefault(name, {})
    node[leaf] = value
  return tree


def _paths(tree, prefix=""):
  if isinstance(tree, dict):
    out = {}
    for k, v in tree.items():
      out.update(_paths(v, f"{prefix}/{k}" if prefix else str(k)))
    return out
  return {prefix: tree}


def check_shapes(params, expected, path):
  """Raises naming the first parameter (path, expected and found shape) that does not fit.

  `expected` is the module's own tree (e.g. from jax.eval_shape of init); both are
  plain nested dicts. Keys present on one side only are reported too.
  """
  got = _paths(jax.tree.map(np.shape, params, is_leaf=lambda x: x is None))
  want = _paths(jax.tree.map(np.shape, expected))
  only_want, only_got = set(want) - set(got), set(got) - set(want)
  if only_want or only_got:
    raise WeightFileError(f"{str(path)!r}: parameters the model has but the file did not fill: "
                          f"{_listing(only_want) or 'none'}; filled but unknown to the model: "
                          f"{_listing(only_got) or 'none'}.")
  for name in sorted(want):
    if tuple(got[name]) != tuple(want[name]):
      raise WeightFileError(f"{str(path)!r}: parameter {name} has shape {tuple(got[name])} in "
                            f"the file, the model expects {tuple(want[name])}.")


def finish(reader, flat, expected, path):
  """The converted parameter tree of a file whose every tensor went through `reader`: unused
  tensors reported (reader.finish), {'a/b': x} nested, every shape checked against `expected`."""
  reader.finish()
  params = unflatten(flat)
  check_shapes(params, expected, path)
  return params


def load_diffusers(directory, config_file, weights_file, config_of, module_of, convert, dtype):
  """(config, module, variables) of a diffusers model folder (local or gs://): config.json read
  by `config_of(json, path)`, the module built by `module_of(config, dtype)`, the safetensors
  read with numpy and converted by `convert(tensors, module, path)`."""
  directory = epath.Path(directory)
  config_path = directory / config_file
  config = config_of(read_json(config_path), config_path)
  module = module_of(config, dtype)
  weights_path = directory / weights_file
  return config, module, convert(read_safetensors(weights_path), module, weights_path)
