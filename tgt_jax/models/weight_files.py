"""Reading published weight files (safetensors, npz, config.json) into Flax parameter trees.

Published checkpoints come in other frameworks' layouts: PyTorch names and OIHW
kernels (diffusers, timm) or TensorFlow names and HWIO kernels (BiT's npz). A
converter walks the Flax tree it wants and asks a `TensorReader` for each source
tensor by name; the reader records what was asked for, so one `finish()` reports
every missing key and every unused one together, and `check_shapes` names the
first parameter whose shape differs from the module's, with both shapes.
Files are read with numpy only (no torch, no TensorFlow), from local paths or
any path etils understands (gs://).
"""

import io
import json

import jax
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


def read_safetensors(path):
  """{name: np.ndarray} of a .safetensors file (a truncated or foreign file is named)."""
  from safetensors import numpy as st_numpy  # pylint: disable=g-import-not-at-top
  path = _existing(path)
  data = path.read_bytes()
  try:
    return dict(st_numpy.load(data))
  except Exception as e:  # pylint: disable=broad-except  (the Rust reader raises its own types)
    raise WeightFileError(f"{str(path)!r} is not a readable safetensors file "
                          f"({len(data)} bytes; truncated?): {type(e).__name__}: {e}") from None


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
  """Source tensors by name, remembering which were used and which were missing."""

  def __init__(self, tensors, path, ignore=()):
    self.tensors, self.path = tensors, str(path)
    self._ignored = {k for k in tensors if any(k.endswith(s) for s in ignore)}
    self._used, self._missing = set(), []

  def has(self, key):
    return key in self.tensors

  def __call__(self, key, transform=None):
    """The tensor `key` as float32 numpy (after `transform`), or a placeholder if missing."""
    if key not in self.tensors:
      self._missing.append(key)
      return None
    self._used.add(key)
    value = np.asarray(self.tensors[key], np.float32)
    return transform(value) if transform is not None else value

  def finish(self):
    """Raises one error naming the missing keys and the keys nothing read."""
    unused = set(self.tensors) - self._used - self._ignored
    if self._missing or unused:
      parts = []
      if self._missing:
        parts.append(f"{len(self._missing)} key(s) missing: {_listing(self._missing)}")
      if unused:
        parts.append(f"{len(unused)} key(s) not used by the model: {_listing(unused)}")
      raise WeightFileError(f"{self.path!r} does not match the model: {'; '.join(parts)}. "
                            "Is it a checkpoint of this architecture and config?")


def conv_kernel(oihw):
  """PyTorch's Conv2d weight [O, I, H, W] → Flax's [H, W, I, O]."""
  return np.transpose(oihw, (2, 3, 1, 0))


def linear_kernel(out_in):
  """PyTorch's Linear weight [out, in] → Flax's Dense kernel [in, out]."""
  return np.transpose(out_in)


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
