"""DiT: diffusers' published transformer files load and reproduce diffusers' outputs.

The fixture (tests/fixtures/make_dit.py) is a tiny random DiTTransformer2DModel saved by
diffusers, every parameter perturbed so no AdaLN-zero weight is zero, with diffusers'
outputs on fixed latents, timesteps and labels (the null class among them); damaged
copies made here check that each bad file is named in the error.
"""

import functools
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors import numpy as st_numpy

from conftest import FAST_COMPILE, assert_names_missing_and_unused
from tgt_jax.models import dit
from tgt_jax.models import weight_files

TINY = os.path.join(os.path.dirname(__file__), "..", "fixtures", "pretrained", "dit")


@functools.lru_cache(maxsize=None)
def _reference():
  with np.load(os.path.join(TINY, "reference.npz")) as npz:
    return {k: npz[k] for k in npz.files}


@functools.lru_cache(maxsize=None)
def _loaded():
  return dit.load(TINY)


@functools.lru_cache(maxsize=None)
def _compiled(module, batch, t_dtype):
  """One compiled forward pass per (module, batch, timestep dtype)."""
  config = module.config
  x = jax.ShapeDtypeStruct((batch, config.sample_size, config.sample_size, config.in_channels),
                           jnp.float32)
  t = jax.ShapeDtypeStruct((batch,), t_dtype)
  labels = jax.ShapeDtypeStruct((batch,), jnp.int32)
  variables = {"params": dit.abstract_params(module)}
  return jax.jit(module.apply).lower(variables, x, t, labels).compile(FAST_COMPILE)


def _run(module, variables, x, t, labels):
  return _compiled(module, x.shape[0], np.asarray(t).dtype)(variables, x, t, labels)


def _copy(tmp_path):
  directory = tmp_path / "dit"
  shutil.copytree(TINY, directory)
  return directory


def _tensors():
  return weight_files.read_safetensors(os.path.join(TINY, dit.WEIGHTS_FILE))


@pytest.mark.parametrize("case", ["int", "frac"])
def test_matches_diffusers(case):
  """Noise and learned-σ channels for timesteps 0…999 (and fractional ones), null class included."""
  _, module, variables = _loaded()
  ref = _reference()
  x, labels = ref["model_x"], ref["model_labels"]
  if case == "int":
    t, want = ref["model_t"], (ref["model_noise"], ref["model_sigma"])
  else:
    t, want = ref["model_t_frac"], (ref["model_frac_noise"], ref["model_frac_sigma"])
    x, labels = x[: len(t)], labels[: len(t)]
  assert dit.DiTConfig().null_class == 1000 and module.config.null_class in labels
  got = _run(module, variables, x, t, labels)
  for name, g, w in zip(("noise", "sigma"), got, want):
    assert g.dtype == jnp.float32 and g.shape == w.shape == x.shape, name
    diff = float(np.max(np.abs(np.asarray(g) - w)))
    assert diff <= 1e-4, f"{case} {name}: max abs difference {diff:.2e}"


def test_fixture_can_catch_conditioning_mistakes():
  """The final layer must use block 0's embedder: the fixture's two blocks' embedders differ,
  and no AdaLN-zero or final-layer weight is zero (diffusers' init could leave them so)."""
  tensors = _tensors()
  for name in ("timestep_embedder.linear_1.weight", "class_embedder.embedding_table.weight"):
    first, second = (tensors[f"transformer_blocks.{i}.norm1.emb.{name}"] for i in (0, 1))
    assert np.abs(first - second).max() > 0.05, name
  for key, value in tensors.items():
    if "norm1.linear" in key or "proj_out" in key:
      assert np.abs(value).min() > 0, key


def test_configs_read_as_diffusers_does():
  config = _loaded()[0]
  assert (config.width, config.num_layers, config.patch_size, config.num_classes,
          config.out_channels, config.norm_eps) == (24, 2, 2, 10, 8, 1e-5)
  assert config.learned_sigma and config.null_class == 10
  with open(os.path.join(TINY, dit.CONFIG_FILE)) as f:
    raw = json.load(f)
  raw["_class_name"] = "Transformer2DModel"      # how DiT-XL-2-256's hub config names it
  for key in ("out_channels", "norm_eps", "activation_fn", "norm_type"):
    raw.pop(key, None)                            # absent keys take diffusers' defaults
  config = dit.DiTConfig.from_diffusers(raw)
  assert config.out_channels == config.in_channels and not config.learned_sigma
  assert config.norm_eps == 1e-5 and config.activation_fn == "gelu-approximate"


def test_dit_xl_2_from_its_hub_config():
  """DiT-XL-2-256's transformer/config.json as we recall it (old class name, Transformer2DModel's
  extra keys; not checked against the hub from here) is DiTConfig()'s defaults. The parameters: the paper's 675,129,632 less the fixed
  position table (256 × 1152, a constant here) plus 27 more copies of the 2,777,472-parameter
  embedder (diffusers' layout repeats it in all 28 blocks)."""
  hub = {"_class_name": "Transformer2DModel", "_diffusers_version": "0.12.0.dev0",
         "activation_fn": "gelu-approximate", "attention_bias": True, "attention_head_dim": 72,
         "cross_attention_dim": None, "dropout": 0.0, "in_channels": 4,
         "norm_elementwise_affine": False, "norm_num_groups": 32, "norm_type": "ada_norm_zero",
         "num_attention_heads": 16, "num_embeds_ada_norm": 1000, "num_layers": 28,
         "num_vector_embeds": None, "only_cross_attention": False, "out_channels": 8,
         "patch_size": 2, "sample_size": 32, "upcast_attention": False,
         "use_linear_projection": False}
  config = dit.DiTConfig.from_diffusers(hub)
  assert config == dit.DiTConfig() and config.width == 1152 and config.null_class == 1000
  params = sum(x.size for x in jax.tree.leaves(dit.abstract_params(dit.DiT(config))))
  assert params == 675_129_632 - 256 * 1152 + 27 * 2_777_472, params


def test_labels_outside_the_table_give_nan():
  _, module, variables = _loaded()
  ref = _reference()
  noise, _ = _run(module, variables, ref["model_x"], ref["model_t"],
                  np.array([11, -1, 10, 0, 3], np.int32))
  assert np.isnan(np.asarray(noise[:2])).all() and np.isfinite(np.asarray(noise[2:])).all()


def test_position_and_timestep_embeddings():
  """Layouts the equality depends on, checked on values that can be worked out by hand."""
  pos = dit.position_embedding(8, 3)             # 9 tokens, 2 frequencies per half-quarter
  row, col = 1, 2                                # token 5 of the row-major 3×3 grid
  want = [np.sin(col), np.sin(col / 100), np.cos(col), np.cos(col / 100),
          np.sin(row), np.sin(row / 100), np.cos(row), np.cos(row / 100)]
  np.testing.assert_allclose(pos[row * 3 + col], want, rtol=1e-6)
  features = np.asarray(dit.timestep_features(np.array([0.0, 10.0]), features=8))
  np.testing.assert_allclose(features[0], [1, 1, 1, 1, 0, 0, 0, 0])    # cos first
  freqs = np.exp(-np.log(10000) * np.arange(4) / 3)                  # /(half − 1)
  np.testing.assert_allclose(features[1], np.concatenate([np.cos(10 * freqs),
                                                          np.sin(10 * freqs)]), rtol=1e-5)


def test_bfloat16_compute_stays_close():
  _, module, variables = _loaded()
  ref = _reference()
  bf16 = module.clone(dtype=jnp.bfloat16)
  noise, sigma = _run(bf16, variables, ref["model_x"], ref["model_t"], ref["model_labels"])
  assert noise.dtype == sigma.dtype == jnp.float32
  for got, want in ((noise, ref["model_noise"]), (sigma, ref["model_sigma"])):
    err = float(np.max(np.abs(np.asarray(got) - want)) / np.max(np.abs(want)))
    assert err < 0.05, f"bf16: max error {err:.3f} of the largest value"
  assert {a.dtype for a in jax.tree.leaves(variables)} == {np.dtype(np.float32)}


def test_wrong_input_size():
  _, module, variables = _loaded()
  x = jnp.zeros((1, 16, 16, 4))
  with pytest.raises(ValueError, match="16x16.*8x8"):
    jax.eval_shape(module.apply, variables, x, jnp.zeros((1,), jnp.int32),
                   jnp.zeros((1,), jnp.int32))


@pytest.mark.parametrize("key,value", [
    ("_class_name", "UNet2DConditionModel"),
    ("norm_type", "ada_norm_single"),
    ("activation_fn", "geglu"),
    ("num_embeds_ada_norm", None),
    ("out_channels", 6),
    ("norm_elementwise_affine", True),
    ("cross_attention_dim", 768),
    ("sample_size", 9),
    ("num_layers", 0),
])
def test_unsupported_config(tmp_path, key, value):
  directory = _copy(tmp_path)
  path = directory / dit.CONFIG_FILE
  config = json.loads(path.read_text())
  config[key] = value
  path.write_text(json.dumps(config))
  with pytest.raises(weight_files.WeightFileError) as e:
    dit.load(directory)
  message = str(e.value)
  assert str(path) in message and key in message and repr(value) in message, message


def test_missing_and_unused_tensors(tmp_path):
  directory = _copy(tmp_path)

  def load(tensors):
    st_numpy.save_file(tensors, str(directory / dit.WEIGHTS_FILE))
    dit.load(directory)

  assert_names_missing_and_unused(
      load, _tensors(),
      missing=["proj_out_1.weight", "transformer_blocks.0.ff.net.0.proj.bias",
               "transformer_blocks.1.norm1.emb.class_embedder.embedding_table.weight"],
      unused={"transformer_blocks.2.attn1.to_q.weight": np.zeros((2,), np.float32),
              "pos_embed.pos_embed": np.zeros((2,), np.float32)})


def test_embedder_stored_once_is_shared(tmp_path):
  """A file that keeps the (repeated) timestep/label embedder in block 0 only still loads."""
  directory = _copy(tmp_path)
  tensors = {k: v for k, v in _tensors().items()
             if not k.startswith("transformer_blocks.1.norm1.emb.")}
  st_numpy.save_file(tensors, str(directory / dit.WEIGHTS_FILE))
  params = dit.load(directory)[2]["params"]
  first, second = (params[f"transformer_blocks_{i}"]["norm1"]["emb"] for i in (0, 1))
  for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(second)):
    np.testing.assert_array_equal(a, b)


def test_wrong_shape(tmp_path):
  directory = _copy(tmp_path)
  tensors = _tensors()
  tensors["transformer_blocks.1.attn1.to_out.0.weight"] = np.zeros((24, 12), np.float32)
  st_numpy.save_file(tensors, str(directory / dit.WEIGHTS_FILE))
  with pytest.raises(weight_files.WeightFileError) as e:
    dit.load(directory)
  message = str(e.value)
  assert "transformer_blocks_1/attn1/to_out_0/kernel" in message, message
  assert "(12, 24)" in message and "(24, 24)" in message, message


def test_missing_files(tmp_path):
  with pytest.raises(FileNotFoundError, match="config.json"):
    dit.load(tmp_path / "absent")
  directory = tmp_path / "dit"
  directory.mkdir()
  shutil.copy(os.path.join(TINY, dit.CONFIG_FILE), directory)
  with pytest.raises(FileNotFoundError, match=dit.WEIGHTS_FILE):
    dit.load(directory)
