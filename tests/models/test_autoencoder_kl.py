"""AutoencoderKL: diffusers' published files load and reproduce diffusers' outputs.

The fixtures (tests/fixtures/make_pretrained_vae.py) are tiny random diffusers models
saved by diffusers itself, with diffusers' outputs on fixed inputs; damaged copies made
here check that each bad file is named in the error.
"""

import functools
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util
from safetensors import numpy as st_numpy

from conftest import FAST_COMPILE, assert_names_missing_and_unused
from tgt_jax.models import autoencoder_kl as akl
from tgt_jax.models import weight_files

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "pretrained")
VARIANTS = ("autoencoder_kl", "autoencoder_kl_16ch")
TINY = os.path.join(FIXTURES, "autoencoder_kl")
OLD_NAMES = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}


def _reference(name):
  with np.load(os.path.join(FIXTURES, name, "reference.npz")) as npz:
    return {k: npz[k] for k in npz.files}


@functools.lru_cache(maxsize=None)
def _loaded(name):
  return akl.load(os.path.join(FIXTURES, name))


@functools.lru_cache(maxsize=None)
def _teacher(module):
  """One compiled pass: encode, E(x) and G(E(x)) (= decode(mean)); XLA merges the two encoders.

  Compiling is most of this file's run time; FAST_COMPILE cuts it by 2–3× on these
  tiny graphs and moves float32 results by less than 1e-6.
  """

  def run(variables, x):
    mean, logvar = module.apply(variables, x, method="encode")
    latent = module.apply(variables, x, method="encode_latent")
    return dict(mean=mean, logvar=logvar, latent=latent,
                decoded=module.apply(variables, latent, method="decode_latent"))

  def call(variables, x):
    compiled = jax.jit(run).lower(variables, x).compile(compiler_options=FAST_COMPILE)
    return compiled(variables, x)

  return call


def _copy(tmp_path, source=TINY):
  directory = tmp_path / "vae"
  shutil.copytree(source, directory)
  return directory


def _tensors(directory=TINY):
  return weight_files.read_safetensors(os.path.join(directory, akl.WEIGHTS_FILE))


def _write_tensors(directory, tensors):
  st_numpy.save_file(tensors, str(directory / akl.WEIGHTS_FILE))


def _flat(variables):
  return traverse_util.flatten_dict(variables["params"])


@pytest.mark.parametrize("name", VARIANTS)
def test_matches_diffusers(name):
  """encoder mean and logvar, E(x), and G(E(x)) against diffusers' decode(mean)."""
  config, module, variables = _loaded(name)
  ref = _reference(name)
  out = _teacher(module)(variables, ref["x"])
  for key in ("mean", "logvar", "decoded", "latent"):
    assert out[key].dtype == jnp.float32 and out[key].shape == ref[key].shape, key
    diff = float(np.max(np.abs(np.asarray(out[key]) - ref[key])))
    assert diff <= 1e-4, f"{name} {key}: max abs difference {diff:.2e}"
  # The fixture pushes logvar channels 0 and 1 past both ends of diffusers' clip.
  np.testing.assert_array_equal(np.asarray(out["logvar"])[..., :2].max((0, 1, 2)), [20, -30])
  assert out["decoded"].shape == ref["x"].shape
  # The 16-channel fixture has no mid-block attention (mid_block_add_attention false).
  has_attention = any("attentions_0" in k for k in _flat(variables))
  assert has_attention == config.mid_block_add_attention == (name == "autoencoder_kl")


def test_configs_read_as_diffusers_does():
  tiny, shifted = _loaded("autoencoder_kl")[0], _loaded("autoencoder_kl_16ch")[0]
  assert tiny.shift_factor == 0.0 and tiny.use_quant_conv and tiny.use_post_quant_conv
  assert shifted.shift_factor == pytest.approx(0.0609) and not shifted.use_quant_conv
  assert (tiny.block_out_channels, tiny.layers_per_block, tiny.latent_channels,
          tiny.norm_num_groups) == ((16, 32), 1, 4, 8)
  z = np.linspace(-2, 2, 5, dtype=np.float32)
  np.testing.assert_allclose(shifted.to_latent(shifted.from_latent(z)), z, atol=1e-6)
  with open(os.path.join(TINY, akl.CONFIG_FILE)) as f:
    raw = json.load(f)
  for key in ("use_post_quant_conv", "mid_block_add_attention", "shift_factor"):
    raw.pop(key, None)                       # absent keys take diffusers' defaults
  config = akl.AutoencoderKLConfig.from_diffusers(raw)
  assert config.use_post_quant_conv and config.mid_block_add_attention
  assert config.shift_factor == 0.0


@pytest.mark.parametrize("old_names,conv_shaped", [(True, False), (True, True), (False, True)])
def test_attention_weight_spellings(tmp_path, old_names, conv_shaped):
  """Old files name attention query/key/value/proj_attn; some store them as 1×1 convs."""
  directory = _copy(tmp_path)
  changed, tensors = 0, {}
  for key, value in _tensors().items():
    if ".attentions.0." in key and ".group_norm." not in key:
      changed += 1
      if old_names:
        new = next(n for n in OLD_NAMES if f".attentions.0.{n}." in key)
        key = key.replace(f".attentions.0.{new}.", f".attentions.0.{OLD_NAMES[new]}.")
      if conv_shaped and value.ndim == 2:
        value = value[:, :, None, None]
    tensors[key] = value
  assert changed == 16                        # 4 layers × weight, bias × 2 mid blocks
  _write_tensors(directory, tensors)
  got, want = _flat(akl.load(directory)[2]), _flat(_loaded("autoencoder_kl")[2])
  assert got.keys() == want.keys()
  for k in want:                              # identical parameters: identical outputs
    np.testing.assert_array_equal(got[k], want[k], err_msg="/".join(k))


def test_bfloat16_compute_stays_close():
  """G in bf16 (GroupNorm and softmax in float32) against diffusers' float32 decode(mean).

  The decoder holds every kind of layer the encoder has but the padded stride-2 conv;
  compiling the bf16 encoder as well would double this test's time.
  """
  _, module, variables = _loaded("autoencoder_kl")
  ref = _reference("autoencoder_kl")
  bf16 = module.clone(dtype=jnp.bfloat16)
  decode = jax.jit(functools.partial(bf16.apply, method="decode_latent"))
  decoded = decode.lower(variables, ref["latent"]).compile(FAST_COMPILE)(variables, ref["latent"])
  assert decoded.dtype == jnp.float32
  err = float(np.max(np.abs(np.asarray(decoded) - ref["decoded"])) / np.max(np.abs(ref["decoded"])))
  assert err < 0.05, f"bf16 decode: max error {err:.3f} of the largest value"
  mean, logvar = jax.eval_shape(functools.partial(bf16.apply, method="encode"), variables, ref["x"])
  assert mean.dtype == logvar.dtype == jnp.float32
  assert all(v.dtype == np.float32 for v in _flat(variables).values())


def test_missing_files(tmp_path):
  with pytest.raises(FileNotFoundError, match="config.json"):
    akl.load(tmp_path / "absent")
  directory = tmp_path / "vae"
  directory.mkdir()
  shutil.copy(os.path.join(TINY, akl.CONFIG_FILE), directory)
  with pytest.raises(FileNotFoundError, match=akl.WEIGHTS_FILE):
    akl.load(directory)


def test_truncated_safetensors(tmp_path):
  directory = _copy(tmp_path)
  path = directory / akl.WEIGHTS_FILE
  path.write_bytes(path.read_bytes()[:5000])
  with pytest.raises(weight_files.WeightFileError, match=r"safetensors.*truncated") as e:
    akl.load(directory)
  assert str(path) in str(e.value)


@pytest.mark.parametrize("key,value", [
    ("_class_name", "UNet2DConditionModel"),
    ("act_fn", "gelu"),
    ("down_block_types", ["DownEncoderBlock2D", "AttnDownEncoderBlock2D"]),
    ("up_block_types", ["UpDecoderBlock2D"]),
    ("norm_num_groups", 12),
    ("layers_per_block", 0),
])
def test_unsupported_config(tmp_path, key, value):
  directory = _copy(tmp_path)
  path = directory / akl.CONFIG_FILE
  config = json.loads(path.read_text())
  config[key] = value
  if key == "_class_name":                    # a real UNet config, as a wrong directory has
    config.update(in_channels=4, cross_attention_dim=768, attention_head_dim=8)
  path.write_text(json.dumps(config))
  with pytest.raises(weight_files.WeightFileError) as e:
    akl.load(directory)
  message = str(e.value)
  assert str(path) in message and key in message and repr(value) in message, message


def test_missing_and_unused_tensors(tmp_path):
  directory = _copy(tmp_path)

  def load(tensors):
    _write_tensors(directory, tensors)
    akl.load(directory)

  assert_names_missing_and_unused(
      load, _tensors(), missing=["decoder.conv_out.weight",
                                 "encoder.mid_block.attentions.0.to_k.bias"],
      unused={"encoder.extra.weight": np.zeros((2,), np.float32),
              "decoder.up_blocks.9.resnets.0.conv1.bias": np.zeros((2,), np.float32)})


@pytest.mark.parametrize("key,shape,want", [
    ("decoder.mid_block.resnets.1.conv2.weight", (32, 32, 1, 1), "(32, 32, 3, 3) [O, I, H, W]"),
    ("encoder.mid_block.attentions.0.to_q.weight", (32, 16), "(32, 32) [out, in]"),
])
def test_wrong_shape_names_the_stored_tensor(tmp_path, key, shape, want):
  """The file's key and its stored (PyTorch-layout) shape, not the Flax name or HWIO shape."""
  directory = _copy(tmp_path)
  tensors = _tensors()
  tensors[key] = np.zeros(shape, np.float32)
  _write_tensors(directory, tensors)
  with pytest.raises(weight_files.WeightFileError) as e:
    akl.load(directory)
  message = str(e.value)
  assert f"tensor {key} has shape {shape} in the file, the model expects {want}" in message, (
      message)
  assert str(directory / akl.WEIGHTS_FILE) in message, message
