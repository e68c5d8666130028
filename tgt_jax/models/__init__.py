"""Models by name, so configs choose them with a string.

`classifier(name, num_classes)` builds students and labelers;
`generator(name, image_shape, latent_dim)` builds generative teachers;
`encoder(name, latent_dim)` builds stand-alone encoders (a teacher from parts,
see tgt_jax/teachers/components.py). `dtype` (compute dtype, e.g. jnp.bfloat16)
is passed only to models that have one; parameters always stay float32. Text
models (models/text.py) also take `vocab_size`, which the data decides.
"""

import dataclasses
import functools

from tgt_jax.models.bigbigan import Encoder, Generator
from tgt_jax.models.classifiers import ConvNet, MLP
from tgt_jax.models.resnet import ResNet
from tgt_jax.models.text import BagOfEmbeddings, TextVAE, TransformerClassifier, TransformerSize
from tgt_jax.models.vae import ConvVAE

CLASSIFIERS = {
    # ~2.4k parameters on 8×8 digits: the tiny student of docs/design.md.
    "mlp": functools.partial(MLP, hidden=(32,)),
    # ~21k parameters on 8×8: the small CNN student.
    "cnn_small": functools.partial(ConvNet, conv_features=(16, 32), conv_strides=(1, 2),
                                   dense_features=32),
    # ~130k parameters on 8×8: a labeler clearly stronger than either student.
    "cnn_labeler": functools.partial(ConvNet, conv_features=(32, 32, 64, 64),
                                     conv_strides=(1, 1, 2, 1), dense_features=128),
    # GroupNorm + weight-standardised ResNet v1.5 (BiT-style, no batch statistics).
    # 11.7M / 25.6M parameters with 1000 classes.
    "resnet18": functools.partial(ResNet, stage_sizes=(2, 2, 2, 2), bottleneck=False),
    "resnet50": functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), bottleneck=True),
    # 3×3/1 stem without max-pool, for 32 px CIFAR (11.2M parameters with 10 classes).
    "resnet18_cifar": functools.partial(ResNet, stage_sizes=(2, 2, 2, 2), bottleneck=False,
                                        small_images=True),
    # ~9k parameters: resnet50's code path (stem, max-pool, bottlenecks) for CPU tests.
    "resnet_tiny": functools.partial(ResNet, stage_sizes=(1, 1), bottleneck=True, width=1 / 8),
    # Text (token ids or soft tokens). 0.46M parameters with 6k words, 85% in the
    # embeddings: the text student (also pretrained with masked tokens for the baseline).
    "text_transformer": functools.partial(TransformerClassifier,
                                          size=TransformerSize(64, 2, 4, 128)),
    # Order-blind baseline student: mean of word embeddings → MLP (0.39M parameters).
    "bag_of_embeddings": functools.partial(BagOfEmbeddings, width=64, hidden=64),
    # The text labeler (1.18M parameters): wider and deeper than the student, trained on
    # every train label.
    "text_labeler": functools.partial(TransformerClassifier,
                                      size=TransformerSize(128, 3, 4, 256)),
    # For CPU tests and smoke runs only.
    "text_tiny": functools.partial(TransformerClassifier, size=TransformerSize(16, 1, 2, 32)),
}

ENCODERS = {
    # BigBiGAN-shaped: ResNet-50 trunk + MLP, 256 px input.
    "bigbigan_encoder": Encoder,
    # 16 px input, 8 channels: for CPU tests and smoke runs only.
    "bigbigan_encoder_tiny": functools.partial(Encoder, resolution=16, stage_sizes=(1, 1),
                                               width=1 / 8, mlp_dim=32),
}

GENERATORS = {
    "conv_vae": ConvVAE,
    # BigBiGAN-shaped: 120-d latent → 128×128×3. These fix their own output
    # resolution: `generator()` ignores image_shape for them.
    "bigbigan_generator": Generator,
    # 16×16×3, 8 base channels: for CPU tests and smoke runs only.
    "bigbigan_generator_tiny": functools.partial(Generator, resolution=16, width=1 / 8),
    # Sequence VAE over token ids (image_shape = (max_len,)): the text teacher's E and G
    # (1.48M parameters with 6k words).
    "text_vae": functools.partial(TextVAE, size=TransformerSize(96, 2, 4, 192)),
    "text_vae_tiny": functools.partial(TextVAE, size=TransformerSize(16, 1, 2, 32)),
}


def _lookup(registry, kind, name):
  if name not in registry:
    raise ValueError(f"Unknown {kind} model name {name!r}; known: {sorted(registry)}.")
  return registry[name]


def _fields(make):
  return {f.name for f in dataclasses.fields(getattr(make, "func", make))}


DTYPES = ("float32", "bfloat16", "float16")


def check_classifier(name, dtype=None):
  """A classifier's name (and compute dtype), checked before anything is built or trained."""
  make = _lookup(CLASSIFIERS, "classifier", name)
  if dtype:
    if dtype not in DTYPES:
      raise ValueError(f"Unknown compute dtype {dtype!r}; choose one of {list(DTYPES)}.")
    if "dtype" not in _fields(make):
      raise ValueError(f"The classifier {name!r} has no compute dtype; leave dtype unset for "
                       "it (models with one: "
                       f"{sorted(n for n, m in CLASSIFIERS.items() if 'dtype' in _fields(m))}).")


def _build(make, kind, name, dtype, vocab_size=None, **kwargs):
  if "vocab_size" in _fields(make):
    if not vocab_size:
      raise ValueError(f"The {kind} {name!r} reads text: it needs the data's vocabulary size "
                       "(a text dataset such as wordnet).")
    kwargs["vocab_size"] = int(vocab_size)
  if dtype is not None:
    if "dtype" not in _fields(make):
      raise ValueError(f"The {kind} {name!r} has no compute dtype; leave dtype unset for it.")
    kwargs["dtype"] = dtype
  return make(**kwargs)


def classifier(name, num_classes, dtype=None, vocab_size=None):
  make = _lookup(CLASSIFIERS, "classifier", name)
  return _build(make, "classifier", name, dtype, vocab_size, num_classes=num_classes)


def encoder(name, latent_dim, dtype=None):
  make = _lookup(ENCODERS, "encoder", name)
  return _build(make, "encoder", name, dtype, latent_dim=latent_dim)


def generator(name, image_shape, latent_dim, output_range=(0.0, 1.0), dtype=None,
              vocab_size=None):
  """A generator; one with its own `resolution` (bigbigan_*) ignores `image_shape`."""
  make = _lookup(GENERATORS, "generator", name)
  kwargs = dict(latent_dim=latent_dim, output_range=tuple(output_range))
  if "image_shape" in _fields(make):
    kwargs["image_shape"] = tuple(image_shape)
  return _build(make, "generator", name, dtype, vocab_size, **kwargs)
