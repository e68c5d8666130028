"""weight_files: safetensors parsed here (every dtype numpy or ml_dtypes has), read as float32
parameters, and misfits named as the file stores them."""

import json
import os

import ml_dtypes
import numpy as np
import pytest
from safetensors import numpy as st_numpy

from tgt_jax.models import weight_files
from tgt_jax.models.weight_files import WeightFileError

HALF = os.path.join(os.path.dirname(__file__), "..", "fixtures", "pretrained", "timm_resnet_half")
NUMPY_DTYPES = (np.float64, np.float32, np.float16, np.int64, np.int32, np.int16, np.int8,
                np.uint64, np.uint32, np.uint16, np.uint8, np.bool_, np.complex64)


def _raw_file(tmp_path, header, data=b""):
  """A safetensors file from a header dict and data bytes, as the format lays them out."""
  text = json.dumps(header).encode()
  path = tmp_path / "raw.safetensors"
  path.write_bytes(len(text).to_bytes(8, "little") + text + data)
  return str(path)


def test_every_numpy_dtype_reads_as_safetensors_own_reader_does(tmp_path):
  rng = np.random.default_rng(0)
  tensors = {f"t_{np.dtype(d).name}": (rng.normal(size=(2, 3)) * 50).astype(d)
             for d in NUMPY_DTYPES}
  tensors["position_ids"] = np.arange(7, dtype=np.int64)[None]     # what text encoders hold
  tensors["scalar"] = np.asarray(3.5, np.float32)
  path = str(tmp_path / "all.safetensors")
  st_numpy.save_file(tensors, path)
  ours, theirs = weight_files.read_safetensors(path), st_numpy.load_file(path)
  assert ours.keys() == theirs.keys()
  for key, value in theirs.items():
    assert ours[key].dtype == value.dtype and ours[key].shape == value.shape, key
    np.testing.assert_array_equal(ours[key], value, err_msg=key)


def test_bf16_and_f16_fixtures_hold_half_precision_and_read_as_float32():
  """torch wrote them (make_pretrained_labelers.py); F64 is read too (rounded to float32)."""
  for name, dtype in (("basic_bf16", ml_dtypes.bfloat16), ("basic_f16", np.float16)):
    tensors = weight_files.read_safetensors(os.path.join(HALF, f"{name}.safetensors"))
    assert tensors["fc.weight"].dtype == dtype
    assert tensors["bn1.num_batches_tracked"].dtype == np.int64         # I64 beside them
    reader = weight_files.TensorReader(tensors, name)
    value = reader("fc.weight")
    assert value.dtype == np.float32
    np.testing.assert_array_equal(value, tensors["fc.weight"].astype(np.float32))
  reader = weight_files.TensorReader({"w": np.asarray([0.1], np.float64)}, "f64")
  assert reader("w").dtype == np.float32 and reader("w")[0] == np.float32(0.1)


def test_integer_bool_and_complex_tensors_are_no_parameters():
  tensors = {"embeddings.position_ids": np.arange(4), "mask": np.ones(2, bool),
             "phase": np.ones(2, np.complex64)}
  reader = weight_files.TensorReader(tensors, "ids.safetensors")
  for key, dtype in (("embeddings.position_ids", "int64"), ("mask", "bool"),
                     ("phase", "complex64")):
    with pytest.raises(WeightFileError, match=rf"'{key}' is stored as {dtype}, but the model "
                                              "reads it as a floating-point parameter"):
      reader(key)


def test_eight_bit_floats_read_and_packed_ones_are_refused_by_name(tmp_path):
  header = {"__metadata__": {"format": "pt"},
            "e4m3": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]},
            "e5m2": {"dtype": "F8_E5M2", "shape": [1], "data_offsets": [2, 3]}}
  tensors = weight_files.read_safetensors(_raw_file(tmp_path, header, bytes([0x38, 0xC0, 0x3C])))
  reader = weight_files.TensorReader(tensors, "f8")
  np.testing.assert_array_equal(reader("e4m3"), [1.0, -2.0])    # sign 1 bit, 4 exponent, 3 mantissa
  np.testing.assert_array_equal(reader("e5m2"), [1.0])
  header["packed"] = {"dtype": "F4", "shape": [2], "data_offsets": [3, 4]}
  with pytest.raises(WeightFileError, match=r"raw.safetensors.*tensor 'packed' is stored as F4 "
                                            r"\(packed below a byte\); tgt_jax reads F64, F32"):
    weight_files.read_safetensors(_raw_file(tmp_path, header, bytes(4)))
  header["packed"]["dtype"] = "Q2K"
  with pytest.raises(WeightFileError, match=r"'packed' is stored as Q2K \(unknown to tgt_jax\)"):
    weight_files.read_safetensors(_raw_file(tmp_path, header, bytes(4)))


@pytest.mark.parametrize("header,data,match", [
    ({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, bytes(8),
     r"tensor 'w'.s data ends at byte \d+, past the file's end"),
    ({"w": {"dtype": "BF16", "shape": [4], "data_offsets": [0, 16]}}, bytes(16),
     r"tensor 'w' \(BF16 \(4,\)\) has data_offsets \[0, 16\], not 8 bytes"),
    ({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, bytes(4),
     "tensor 'w' has a malformed header entry"),
    ([1, 2], b"", "the header is not a JSON object"),
])
def test_broken_files_are_named(tmp_path, header, data, match):
  path = _raw_file(tmp_path, header, data)
  with pytest.raises(WeightFileError, match="raw.safetensors' is not a readable safetensors file "
                                            rf"\(\d+ bytes; truncated\?\): {match}"):
    weight_files.read_safetensors(path)
  (tmp_path / "short.safetensors").write_bytes(b"\x10\x00")
  with pytest.raises(WeightFileError, match="shorter than the 8-byte header length"):
    weight_files.read_safetensors(str(tmp_path / "short.safetensors"))


def test_layouts_convert_and_invert_on_shapes():
  oihw = np.arange(2 * 3 * 5 * 7, dtype=np.float32).reshape(2, 3, 5, 7)
  hwio = weight_files.conv_kernel(oihw)
  assert hwio.shape == (5, 7, 3, 2) and hwio[4, 6, 2, 1] == oihw[1, 2, 4, 6]
  assert weight_files.conv_kernel.stored_shape(hwio.shape) == oihw.shape
  linear = weight_files.linear_kernel(oihw[:, :, :1, :1])      # a Linear stored as a 1×1 conv
  np.testing.assert_array_equal(linear, oihw[:, :, 0, 0].T)
  assert weight_files.linear_kernel.stored_shape((3, 2)) == (2, 3)
  assert weight_files.pytorch_layout((3, 3, 4, 8)) is weight_files.conv_kernel
  assert weight_files.pytorch_layout((8,), "bias") is None


@pytest.mark.parametrize("key,stored,flax_shape,layout,match", [
    ("enc.conv.weight", (8, 4, 1, 1), (3, 3, 4, 8), weight_files.conv_kernel,
     r"tensor enc.conv.weight has shape \(8, 4, 1, 1\) in the file, the model expects "
     r"\(8, 4, 3, 3\) \[O, I, H, W\] \(1 more tensor\(s\) misshapen too\)"),
    ("head.weight", (10, 31), (32, 10), weight_files.linear_kernel,
     r"tensor head.weight has shape \(10, 31\) in the file, the model expects \(10, 32\) "
     r"\[out, in\] \(1 more"),
])
def test_misshapen_tensors_are_named_as_stored(key, stored, flax_shape, layout, match):
  tensors = {key: np.zeros(stored, np.float32), "norm.weight": np.zeros(3, np.float32)}
  reader = weight_files.TensorReader(tensors, "model.safetensors")
  reader(key, layout, shape=flax_shape)
  reader("norm.weight", shape=(4,))
  with pytest.raises(WeightFileError, match="'model.safetensors': " + match):
    reader.finish()
