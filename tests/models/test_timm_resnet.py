"""timm BatchNorm ResNets from `model.safetensors` (+ config.json): timm's logits reproduced,
half-precision files read, bad files named."""

import functools
import json
import os
import shutil

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from safetensors import numpy as st_numpy

from conftest import assert_bf16_compute_close, assert_names_missing_and_unused
from tgt_jax.models import timm_resnet
from tgt_jax.models.weight_files import WeightFileError

PRETRAINED = os.path.join(os.path.dirname(__file__), "..", "fixtures", "pretrained")
FIXTURES = os.path.join(PRETRAINED, "timm_resnet")
HALF = os.path.join(PRETRAINED, "timm_resnet_half")
RESNET26 = os.path.join(PRETRAINED, "timm_resnet26")
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


@functools.lru_cache(maxsize=None)
def _load(name):
  model, variables = timm_resnet.load_timm_safetensors(_file(name), ARCHS[name])
  return model, variables, _jit(model)   # one jitted apply: each shape compiles once


@pytest.fixture(scope="module", params=sorted(ARCHS))
def loaded(request):
  return (request.param, *_load(request.param))


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
  spec = timm_resnet.TimmResNet().input_spec       # no config.json: ImageNet's, 224 px
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


@pytest.mark.parametrize("key,shape,match", [
    ("layer2.0.bn1.weight", (5,), r"\(5,\) in the file, the model expects \(8,\)\."),
    ("layer1.0.conv2.weight", (4, 4, 1, 1),
     r"\(4, 4, 1, 1\) in the file, the model expects \(4, 4, 3, 3\) \[O, I, H, W\]\."),
    ("fc.weight", (10, 31), r"\(10, 31\) in the file, the model expects \(10, 128\) \[out, in\]"),
])
def test_wrong_shape_is_named_as_stored(tmp_path, tensors, key, shape, match):
  """The file's own key and shape (PyTorch's layout), not the converted Flax name and shape."""
  damaged = dict(tensors)
  damaged[key] = np.ones(shape, np.float32)
  with pytest.raises(WeightFileError, match=rf"tensor {key} has shape {match}"):
    timm_resnet.load_timm_safetensors(_save(tmp_path, damaged), ARCHS["bottleneck"])


def test_another_architecture_is_refused():
  with pytest.raises(WeightFileError, match="bottleneck blocks, but .* has basic blocks"):
    timm_resnet.load_timm_safetensors(_file("bottleneck"), ARCHS["basic"])
  with pytest.raises(WeightFileError, match=r"\(2, 1, 1, 1\) blocks per stage, but 'resnet50' "
                                            r"has \(3, 4, 6, 3\)"):
    timm_resnet.load_timm_safetensors(_file("bottleneck"), "resnet50")
  with pytest.raises(WeightFileError, match="10-class fc head, not the requested 1000"):
    timm_resnet.load_timm_safetensors(_file("basic"), ARCHS["basic"], num_classes=1000)


# bf16 rounds each weight to 2^-9 relative (f16 to 2^-12); ~36 rounded tensors lie on the
# basic fixture's path (13 convs/fc, 12 BatchNorms of 4), and independent roundings add in
# quadrature, ~6·u: 1.0-1.1% (bf16) and 0.11% (f16) of the largest logit measured. The
# bounds allow 3× that; the exact check of the parameters is what pins the decoding.
HALF_BOUNDS = {"bf16": (ml_dtypes.bfloat16, 0.03), "f16": (np.float16, 0.004)}


@pytest.mark.parametrize("suffix", sorted(HALF_BOUNDS))
def test_half_precision_twin_is_the_float32_file_rounded(suffix, reference):
  dtype, bound = HALF_BOUNDS[suffix]
  path = os.path.join(HALF, f"basic_{suffix}.safetensors")
  _, variables = timm_resnet.load_timm_safetensors(path, ARCHS["basic"])
  _, full, apply = _load("basic")
  flat, flat_full = jax.tree.leaves(variables), jax.tree.leaves(full)
  assert len(flat) == len(flat_full)
  for got, want in zip(flat, flat_full):
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want.astype(dtype).astype(np.float32))
  want = reference["basic_logits40"]
  error = np.abs(np.asarray(apply(variables, reference["x40"])) - want).max() / np.abs(want).max()
  assert 0 < error < bound, f"{suffix}: {error:.4f} of the largest logit"


def _resnet26_reference():
  with np.load(os.path.join(RESNET26, "reference.npz")) as f:
    return dict(f)


def test_config_json_sets_the_input_and_the_architecture():
  """timm's hub layout: config.json names resnet26 and a mean, std and size not ImageNet's."""
  path = os.path.join(RESNET26, "model.safetensors")
  published = timm_resnet.published_input(path)
  assert published.spec == timm_resnet.InputSpec(40, (-1.0, 1.0), (0.3, 0.6, 0.2),
                                                 (0.15, 0.35, 0.25))
  assert published.sources == dict.fromkeys(("resolution", "mean", "std"),
                                            str(timm_resnet.config_path(path)))
  assert (published.architecture, published.num_classes, published.interpolation,
          published.crop_pct) == ("resnet26", 10, "bilinear", 0.9)
  model, variables = timm_resnet.load_timm_safetensors(path)          # arch from config.json
  assert model.input_spec == published.spec and model.channels == (4, 8, 12, 16)
  by_spec = timm_resnet.load_timm_safetensors(path, "resnet:bottleneck:2,2,2,2")[1]
  jax.tree.map(np.testing.assert_array_equal, by_spec, variables)
  ref = _resnet26_reference()
  apply = _jit(model)
  x = 2.0 * ref["x01"] - 1.0
  np.testing.assert_allclose(apply(variables, x), ref["logits"], rtol=0, atol=1e-4)
  imagenet = model.clone(input_spec=timm_resnet.TIMM_INPUT)           # the config ignored
  assert np.abs(_jit(imagenet)(variables, x) - ref["logits"]).max() > 1.0


def test_without_config_json_imagenet_defaults_are_named():
  published = timm_resnet.published_input(_file("basic"))
  assert published.spec == timm_resnet.TIMM_INPUT and published.architecture is None
  assert "no config.json" in published.sources["mean"]
  with pytest.raises(ValueError, match="needs its architecture.*no config.json"):
    timm_resnet.load_timm_safetensors(_file("basic"))


def test_a_key_config_json_lacks_takes_the_imagenet_default_and_says_so(tmp_path):
  directory = tmp_path / "resnet26"
  shutil.copytree(RESNET26, directory)
  config = json.loads((directory / "config.json").read_text())
  del config["pretrained_cfg"]["mean"]
  (directory / "config.json").write_text(json.dumps(config))
  published = timm_resnet.published_input(str(directory / "model.safetensors"))
  assert published.spec.mean == timm_resnet.IMAGENET_MEAN and published.spec.std[0] == 0.15
  assert "ImageNet default" in published.sources["mean"] and "has no mean" in published.sources[
      "mean"]
  assert published.sources["std"] == str(directory / "config.json")


@pytest.mark.parametrize("change,match", [
    (dict(mean=[0.5, 0.5]), r"pretrained_cfg.mean = \[0.5, 0.5\] is not three numbers"),
    (dict(std=[0.2, 0.0, 0.2]), r"pretrained_cfg.std = .* each > 0"),
    (dict(input_size=[3, 40, 48]), r"input_size = \[3, 40, 48\]; .* square RGB"),
    (dict(architecture="resnet50"), "names architecture 'resnet50', not the requested 'resnet26'"),
    (dict(num_classes=7), "num_classes = 7, but the fc head .* has 10"),
])
def test_a_config_json_tgt_jax_cannot_use_is_named(tmp_path, change, match):
  directory = tmp_path / "resnet26"
  shutil.copytree(RESNET26, directory)
  config = json.loads((directory / "config.json").read_text())
  for key, value in change.items():
    (config if key in ("architecture", "num_classes") else config["pretrained_cfg"])[key] = value
  (directory / "config.json").write_text(json.dumps(config))
  with pytest.raises(WeightFileError, match="config.json'.*" + match):
    timm_resnet.load_timm_safetensors(str(directory / "model.safetensors"), "resnet26")


def test_arch_names_and_stage_specs():
  """Every plain ResNet timm registers, at timm's parameter counts; specs; refusals."""
  assert sorted(timm_resnet.ARCHS) == sorted(
      ["resnet18", "resnet26", "resnet34", "resnet50", "resnet101", "resnet152", "resnet200",
       "wide_resnet50_2", "wide_resnet101_2"])
  for name, count in (("resnet26", 15_995_176), ("wide_resnet50_2", 68_883_240)):
    shapes = jax.eval_shape(timm_resnet.model_for(name).init, jax.random.key(0),
                            jnp.zeros((1, 32, 32, 3)))
    assert sum(a.size for a in jax.tree.leaves(shapes["params"])) == count, name
  assert timm_resnet.parse_arch("resnet:basic:1, 1,2,1") == (
      dict(bottleneck=False, stage_sizes=(1, 1, 2, 1)), True)
  for bad in ("resnet:basic:2,2,2", "resnet:wide:2,2,2,2", "resnet:basic:0,1,1,1", 50):
    with pytest.raises(ValueError, match="give one of .*'resnet:basic:N1,N2,N3,N4'"):
      timm_resnet.parse_arch(bad)


@pytest.mark.parametrize("name,match", [
    ("resnet50d", "deep stem .* average-pool shortcuts"),
    ("resnet26t", "tiered deep stem"),
    ("resnet101c", "deep stem"),
    ("resnet10", "no plain 'resnet10'"),
    ("resnext50_32x4d", "Unknown timm ResNet 'resnext50_32x4d'"),
])
def test_unknown_and_variant_archs_are_refused(name, match):
  with pytest.raises(ValueError, match=match):
    timm_resnet.model_for(name)
