"""BiT ResNet-v2 from the official npz layout: timm's logits reproduced, bad files named."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import assert_bf16_compute_close, assert_names_missing_and_unused
from tgt_jax.models import bit
from tgt_jax.models.weight_files import WeightFileError

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "pretrained", "bit")
NPZ = os.path.join(FIXTURES, "tiny_bit.npz")
GROUPS = 4        # the tiny fixture's GroupNorm groups (BiT's own files use 32, the default)
# XLA's CPU compile dominates these tests; its backend optimisation level 0 halves it and
# changes the logits by ~1e-7 (the float32 comparison below still holds to 1e-4).
FAST = {"xla_backend_optimization_level": 0}


def _jit(model):
  return jax.jit(model.apply, compiler_options=FAST)


@pytest.fixture(scope="module")
def reference():
  with np.load(os.path.join(FIXTURES, "reference.npz")) as f:
    return dict(f)


@pytest.fixture(scope="module")
def loaded():
  model, variables = bit.load_bit_npz(NPZ, groups=GROUPS)
  return model, variables, _jit(model)     # one jitted apply: each input shape compiles once


@pytest.fixture(scope="module")
def tensors():
  with np.load(NPZ) as f:
    return dict(f)


def _save(tmp_path, tensors, name="damaged.npz"):
  path = str(tmp_path / name)
  np.savez(path, **tensors)
  return path


def test_architecture_is_read_from_the_file(loaded):
  model, variables, _ = loaded
  assert (model.stage_sizes, model.width, model.num_classes) == ((2, 1, 1), 0.125, 10)
  params = variables["params"]
  assert params["block1"]["unit01"]["a"]["proj"]["standardized_conv2d"]["kernel"].shape == (
      1, 1, 8, 32)
  assert "proj" not in params["block1"]["unit02"]["a"]     # identity shortcut
  assert params["head"]["conv2d"]["kernel"].shape == (1, 1, 128, 10)


@pytest.mark.parametrize("size", [40, 33])
def test_logits_match_timm(loaded, reference, size):
  _, variables, apply = loaded
  logits = apply(variables, reference[f"x{size}"])
  assert logits.dtype == jnp.float32
  np.testing.assert_allclose(logits, reference[f"logits{size}"], rtol=0, atol=1e-4)


def test_minus_inf_pool_padding_is_not_bit(loaded, reference):
  """The fixture sees the stem pool's padding: big_vision's -inf is not what timm/BiT compute."""
  _, variables, _ = loaded
  model = bit.BiTResNetV2(10, (2, 1, 1), 0.125, groups=GROUPS, pool_padding="-inf")
  logits = _jit(model)(variables, reference["x40"])
  assert np.abs(logits - reference["logits40"]).max() > 1e-3


def test_bf16_compute_runs(reference):
  model, variables = bit.load_bit_npz(NPZ, groups=GROUPS, dtype=jnp.bfloat16)
  assert_bf16_compute_close(_jit(model), variables, reference["x40"], reference["logits40"])


def test_examples_do_not_mix(loaded, reference):
  _, variables, apply = loaded
  x = reference["x40"]
  changed = x.copy()
  changed[1] = -changed[1]
  np.testing.assert_array_equal(apply(variables, x)[0], apply(variables, changed)[0])


def test_weight_standardisation_ignores_kernel_scale(loaded, reference):
  _, variables, apply = loaded
  scaled = jax.tree_util.tree_map_with_path(
      lambda p, a: 5 * a - 0.1 if "standardized_conv2d" in jax.tree_util.keystr(p) else a,
      variables)
  np.testing.assert_allclose(apply(scaled, reference["x33"]), reference["logits33"], atol=1e-4)


def test_input_spec():
  spec = bit.BiTResNetV2().input_spec
  assert (spec.resolution, spec.value_range) == (224, (-1.0, 1.0))
  x = jnp.linspace(-1, 1, 12).reshape(1, 2, 2, 3)
  np.testing.assert_allclose(spec.normalize(x), x, atol=1e-6)     # BiT's (x01 - .5) / .5
  np.testing.assert_allclose(spec.from_range(jnp.array([0.0, 0.25, 1.0])), [-1, -0.5, 1])


def test_missing_file(tmp_path):
  with pytest.raises(FileNotFoundError, match="nothing.npz"):
    bit.load_bit_npz(str(tmp_path / "nothing.npz"), groups=GROUPS)


def test_truncated_file(tmp_path):
  path = tmp_path / "cut.npz"
  with open(NPZ, "rb") as f:
    path.write_bytes(f.read()[:5000])
  with pytest.raises(WeightFileError, match="cut.npz.*truncated"):
    bit.load_bit_npz(str(path), groups=GROUPS)


def test_not_a_bit_file(tmp_path):
  path = _save(tmp_path, {"conv1.weight": np.zeros((8, 3, 7, 7), np.float32)})
  with pytest.raises(WeightFileError, match="not a BiT npz.*conv1.weight"):
    bit.load_bit_npz(path, groups=GROUPS)


def test_missing_and_extra_keys_are_named(tmp_path, tensors):
  assert_names_missing_and_unused(
      lambda damaged: bit.load_bit_npz(_save(tmp_path, damaged), groups=GROUPS), tensors,
      missing=["resnet/block2/unit01/b/group_norm/gamma", "resnet/group_norm/beta"],
      unused={"resnet/block3/unit01/d/group_norm/gamma": np.ones(64, np.float32),
              "resnet/pre_logits/kernel": np.ones(3, np.float32)})


def test_wrong_shape_is_named(tmp_path, tensors):
  damaged = dict(tensors)
  damaged["resnet/block2/unit01/b/standardized_conv2d/kernel"] = np.ones((3, 3, 16, 8),
                                                                         np.float32)
  with pytest.raises(WeightFileError,
                     match=r"block2/unit01/b/standardized_conv2d/kernel has shape \(3, 3, 16, 8\)"
                           r" in the file, the model expects \(3, 3, 16, 16\)"):
    bit.load_bit_npz(_save(tmp_path, damaged), groups=GROUPS)


def test_another_depth_than_requested_is_refused():
  with pytest.raises(WeightFileError, match=r"holds BiT R14x0.125 .*\(2, 1, 1\).*not the "
                                            r"requested R50 \(3, 4, 6, 3\)"):
    bit.load_bit_npz(NPZ, depth=50, groups=GROUPS)


def test_another_width_or_head_than_requested_is_refused():
  with pytest.raises(WeightFileError, match="not the requested width 2 .*8 channels"):
    bit.load_bit_npz(NPZ, width=2, groups=GROUPS)
  with pytest.raises(WeightFileError, match="10-class head, not the requested 1000"):
    bit.load_bit_npz(NPZ, num_classes=1000, groups=GROUPS)


def test_matching_request_loads():
  model, _ = bit.load_bit_npz(NPZ, depth=(2, 1, 1), width=1 / 8, num_classes=10,
                              groups=GROUPS)
  assert model.stage_sizes == (2, 1, 1)


def test_unknown_depth():
  with pytest.raises(ValueError, match="Unknown BiT depth 34"):
    bit.stage_sizes_of(34)


BIG_VISION_NPZ = os.path.join(FIXTURES, "tiny_bit_big_vision_1000.npz")


@pytest.fixture(scope="module")
def big_vision_reference():
  with np.load(os.path.join(FIXTURES, "reference_big_vision.npz")) as f:
    return dict(f)


@pytest.mark.parametrize("size", [40, 33])
def test_big_vision_layout_matches_timm_with_its_stem(big_vision_reference, size):
  """big_vision's key layout (conv1/gn1/conv_proj, [1, 1, 1, C] norms, a Dense head) is read
  and computed as big_vision does: -inf stem-pool padding, std-conv eps 1e-10."""
  model, variables = bit.load_bit_npz(BIG_VISION_NPZ, groups=4)
  assert (model.stage_sizes, model.width, model.num_classes) == ((1, 1), 1 / 8, 1000)
  assert (model.pool_padding, model.std_eps) == ("-inf", 1e-10)
  logits = _jit(model)(variables, big_vision_reference[f"x{size}"])
  np.testing.assert_allclose(logits, big_vision_reference[f"logits{size}"], rtol=0, atol=1e-4)


def test_big_vision_layout_computed_with_zero_pool_padding_is_not_big_vision(
    big_vision_reference):
  """The fixture sees the padding (at 33 px the border is a large share of the stem's map)."""
  model, variables = bit.load_bit_npz(BIG_VISION_NPZ, groups=4, pool_padding="zero")
  logits = _jit(model)(variables, big_vision_reference["x33"])
  assert np.abs(logits - big_vision_reference["logits33"]).max() > 1e-3


def test_big_vision_layout_with_a_params_prefix_and_a_stray_key(tmp_path):
  with np.load(BIG_VISION_NPZ) as f:
    prefixed = {f"params/{k}": f[k] for k in f.files}
  model, _ = bit.load_bit_npz(_save(tmp_path, prefixed), groups=4)
  assert model.num_classes == 1000
  prefixed["params/block1/unit01/gn4/scale"] = np.ones((1, 1, 1, 4), np.float32)
  with pytest.raises(WeightFileError, match="params/block1/unit01/gn4/scale"):
    bit.load_bit_npz(_save(tmp_path, prefixed), groups=4)
