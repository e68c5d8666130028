"""timm BatchNorm ResNets from `model.safetensors`: timm's logits reproduced, bad files named."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors import numpy as st_numpy

from conftest import assert_bf16_compute_close, assert_names_missing_and_unused
from tgt_jax.models import timm_resnet
from tgt_jax.models.weight_files import WeightFileError

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "pretrained", "timm_resnet")
TINY = dict(stage_sizes=(2, 1, 1, 1), channels=(4, 8, 16, 32))
ARCHS = {"basic": dict(TINY, bottleneck=False), "bottleneck": dict(TINY, bottleneck=True)}
# XLA's CPU compile dominates these tests; its backend optimisation level 0 halves it and
# changes the logits by ~1e-7 (the float32 comparison below still holds to 1e-4).
FAST = {"xla_backend_optimization_level": 0}


def _jit(model):
  return jax.jit(model.apply, compiler_options=FAST)


def _file(name):
  return os.path.join(FIXTURES, f"{name}.safetensors")


@pytest.fixture(scope="module")
def reference():
  with np.load(os.path.join(FIXTURES, "reference.npz")) as f:
    return dict(f)


@pytest.fixture(scope="module", params=sorted(ARCHS))
def loaded(request):
  name = request.param
  model, variables = timm_resnet.load_timm_safetensors(_file(name), ARCHS[name])
  return name, model, variables, _jit(model)   # one jitted apply: each shape compiles once


@pytest.fixture(scope="module")
def tensors():
  return st_numpy.load_file(_file("bottleneck"))


def _save(tmp_path, tensors, name="damaged.safetensors"):
  path = str(tmp_path / name)
  st_numpy.save_file(tensors, path)
  return path


def test_logits_match_timm(loaded, reference):
  name, model, variables, apply = loaded
  assert model.num_classes == 10 and set(variables) == {"params", "batch_stats"}
  for size in (40, 33):
    logits = apply(variables, reference[f"x{size}"])
    assert logits.dtype == jnp.float32
    np.testing.assert_allclose(logits, reference[f"{name}_logits{size}"], rtol=0, atol=1e-4)


def test_running_statistics_are_used(loaded, reference):
  """The fixture's statistics are far from (0, 1): ignoring them would change the logits."""
  name, _, variables, apply = loaded
  plain = dict(variables, batch_stats=jax.tree.map(np.ones_like, variables["batch_stats"]))
  logits = apply(plain, reference["x40"])
  assert np.abs(logits - reference[f"{name}_logits40"]).max() > 1e-3


def test_bf16_compute_runs(reference):
  model, variables = timm_resnet.load_timm_safetensors(_file("bottleneck"), ARCHS["bottleneck"],
                                                       dtype=jnp.bfloat16)
  assert_bf16_compute_close(_jit(model), variables, reference["x40"],
                            reference["bottleneck_logits40"])


def test_examples_do_not_mix(loaded, reference):
  _, _, variables, apply = loaded
  x = reference["x33"]
  changed = x.copy()
  changed[1] = -changed[1]
  np.testing.assert_array_equal(apply(variables, x)[0], apply(variables, changed)[0])


def test_input_spec_and_preprocess():
  spec = timm_resnet.TimmResNet().input_spec
  assert (spec.resolution, spec.value_range) == (224, (-1.0, 1.0))
  assert (spec.mean, spec.std) == (timm_resnet.IMAGENET_MEAN, timm_resnet.IMAGENET_STD)
  x = jax.jit(timm_resnet.preprocess)(jnp.full((1, 8, 8, 3), 0.485))    # [0, 1], 8 px
  assert x.shape == (1, 224, 224, 3)
  np.testing.assert_allclose(spec.normalize(x)[..., 0], 0.0, atol=1e-5)


def test_resnet50_parameter_count():
  """timm's / torchvision's count (weights only; running statistics are batch_stats)."""
  model = timm_resnet.model_for("resnet50", 1000)
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
  assert sum(a.size for a in jax.tree.leaves(shapes["params"])) == 25_557_032


def test_missing_file(tmp_path):
  with pytest.raises(FileNotFoundError, match="model.safetensors"):
    timm_resnet.load_timm_safetensors(str(tmp_path / "model.safetensors"), "resnet50")


def test_truncated_file(tmp_path):
  path = tmp_path / "cut.safetensors"
  with open(_file("basic"), "rb") as f:
    path.write_bytes(f.read()[:3000])
  with pytest.raises(WeightFileError, match="cut.safetensors.*truncated"):
    timm_resnet.load_timm_safetensors(str(path), ARCHS["basic"])


def test_missing_and_extra_keys_are_named(tmp_path, tensors):
  assert_names_missing_and_unused(
      lambda damaged: timm_resnet.load_timm_safetensors(_save(tmp_path, damaged),
                                                        ARCHS["bottleneck"]), tensors,
      missing=["layer2.0.bn2.running_var", "layer3.0.downsample.0.weight"],
      unused={"layer1.0.se.fc.weight": np.ones((4, 4), np.float32),
              "head.weight": np.ones(3, np.float32)})


def test_wrong_shape_is_named(tmp_path, tensors):
  damaged = dict(tensors)
  damaged["layer2.0.bn1.weight"] = np.ones(5, np.float32)
  with pytest.raises(WeightFileError, match=r"params/layer2/0/bn1/scale has shape \(5,\) in the "
                                            r"file, the model expects \(8,\)"):
    timm_resnet.load_timm_safetensors(_save(tmp_path, damaged), ARCHS["bottleneck"])


def test_another_architecture_is_refused():
  with pytest.raises(WeightFileError, match="bottleneck blocks, but .* has basic blocks"):
    timm_resnet.load_timm_safetensors(_file("bottleneck"), ARCHS["basic"])
  with pytest.raises(WeightFileError, match=r"\(2, 1, 1, 1\) blocks per stage, but 'resnet50' "
                                            r"has \(3, 4, 6, 3\)"):
    timm_resnet.load_timm_safetensors(_file("bottleneck"), "resnet50")
  with pytest.raises(WeightFileError, match="10-class fc head, not the requested 1000"):
    timm_resnet.load_timm_safetensors(_file("basic"), ARCHS["basic"], num_classes=1000)


def test_unknown_arch():
  with pytest.raises(ValueError, match="Unknown timm ResNet 'resnet26'"):
    timm_resnet.model_for("resnet26")
