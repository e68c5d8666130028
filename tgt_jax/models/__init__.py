"""Models by name, so configs choose them with a string.

`classifier(name, num_classes)` builds students and labelers;
`generator(name, image_shape, latent_dim)` builds generative teachers.
"""

import functools

from tgt_jax.models.classifiers import ConvNet, MLP
from tgt_jax.models.vae import ConvVAE

CLASSIFIERS = {
    # ~2.4k parameters on 8×8 digits: DESIGN §3.1's tiny student.
    "mlp": functools.partial(MLP, hidden=(32,)),
    # ~21k parameters on 8×8: the small CNN student.
    "cnn_small": functools.partial(ConvNet, conv_features=(16, 32), conv_strides=(1, 2),
                                   dense_features=32),
    # ~130k parameters on 8×8: a labeler clearly stronger than either student.
    "cnn_labeler": functools.partial(ConvNet, conv_features=(32, 32, 64, 64),
                                     conv_strides=(1, 1, 2, 1), dense_features=128),
}

GENERATORS = {
    "conv_vae": ConvVAE,
}


def _lookup(registry, kind, name):
  if name not in registry:
    raise ValueError(f"Unknown {kind} model name {name!r}; known: {sorted(registry)}.")
  return registry[name]


def classifier(name, num_classes):
  return _lookup(CLASSIFIERS, "classifier", name)(num_classes=num_classes)


def generator(name, image_shape, latent_dim, output_range=(0.0, 1.0)):
  return _lookup(GENERATORS, "generator", name)(
      image_shape=tuple(image_shape), latent_dim=latent_dim, output_range=tuple(output_range))
