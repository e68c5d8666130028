"""A published teacher: a diffusers AutoencoderKL as E and G, a BiT or timm ResNet as T.

The parts were trained on their own conventions, and the student sees the data's:
  * pixels: the student's images lie in the data's `pixel_range`; the autoencoder
    takes and returns [-1, 1]; each labeler declares its range and resolution
    (`input_spec`), and its input is mapped and resized to it. A timm labeler's size,
    mean and std are its config.json's (timm publishes one beside model.safetensors),
    teacher.labeler_resolution replacing the size when > 0; the meta says which were used.
  * latents: E(x) is the autoencoder's scaled posterior mean, a [h/f, w/f, C] map
    (f = 2^(stages − 1)); TGT's exploration works on vectors, so E flattens it and
    G reshapes it back. `latent_dim` is h/f · w/f · C for the student's image size.
  * G's output is clipped to [-1, 1] before it is mapped into `pixel_range`, like
    every generator of tgt_jax.
Parameters are {"generator": autoencoder variables, "labeler": labeler variables}; a
method that never makes x' (kd) loads the labeler alone, and its E and G refuse by name.
"""

import dataclasses
import math

import jax.numpy as jnp

from tgt_jax import sharding, tgt
from tgt_jax.models import autoencoder_kl, bit, timm_resnet

LABELER_FORMATS = ("bit", "timm")
VAE_RANGE = (-1.0, 1.0)


def validate_options(tconfig):
  """The pretrained teacher's own config keys, checked before any file is read:
  teacher.labeler_arch of a timm labeler ('' reads the architecture from its config.json)."""
  if tconfig.get("labeler_format") == "timm" and tconfig.get("labeler_arch"):
    try:
      timm_resnet.parse_arch(tconfig.labeler_arch)
    except ValueError as e:
      raise ValueError(f"teacher.labeler_arch={tconfig.labeler_arch!r}: {e}") from None


def load_labeler(fmt, path, arch=None, num_classes=None, dtype=jnp.float32, **kwargs):
  """(module, variables) of a published labeler: fmt 'bit' (an official .npz) or 'timm'
  (`model.safetensors` of a timm ResNet, `arch` its name, 'resnet:BLOCK:N,N,N,N' or fields;
  None: the `architecture` of the config.json beside it)."""
  if fmt == "bit":
    return bit.load_bit_npz(path, num_classes=num_classes, dtype=dtype, **kwargs)
  if fmt == "timm":
    return timm_resnet.load_timm_safetensors(path, arch, num_classes, dtype)
  raise ValueError(f"Unknown labeler format {fmt!r}; choose one of {list(LABELER_FORMATS)}.")


def labeler_input(fmt, path, labeler, labeler_resolution=0):
  """What the labeler is fed (size, mean, std) and where each value came from, for the meta:
  a timm file's config.json or timm's ImageNet defaults, BiT's published input, and
  teacher.labeler_resolution where it replaces the size."""
  spec = at_resolution(labeler, labeler_resolution)
  out = {"resolution": spec.resolution, "mean": list(spec.mean), "std": list(spec.std),
         "value_range": list(spec.value_range)}
  if fmt == "timm":
    published = timm_resnet.published_input(path)
    sources = dict(published.sources)
    out.update(published_interpolation=published.interpolation,
               published_crop_pct=published.crop_pct)   # recorded, not applied
  else:
    sources = dict.fromkeys(("resolution", "mean", "std"), "BiT's published input")
  if labeler_resolution:
    sources["resolution"] = "teacher.labeler_resolution"
  out["from"] = sources
  return out


def _linear(images, source, target):
  (a, b), (c, d) = source, target
  return (images - a) * ((d - c) / (b - a)) + c


def latent_shape(vae_config, image_shape):
  """The autoencoder's latent map for images of `image_shape` (H, W, 3), checked."""
  height, width, channels = image_shape
  if channels != vae_config.in_channels:
    raise ValueError(f"The autoencoder reads {vae_config.in_channels}-channel images; the data "
                     f"has {channels} channels (image shape {tuple(image_shape)}).")
  factor = 2 ** (len(vae_config.block_out_channels) - 1)
  if height % factor or width % factor:
    raise ValueError(f"Image shape {tuple(image_shape)}: the autoencoder downsamples by {factor}, "
                     f"so height and width must be multiples of {factor}.")
  return height // factor, width // factor, vae_config.latent_channels


def at_resolution(labeler, resolution):
  """`labeler`'s input spec, at `resolution` px instead of its published one when > 0."""
  spec = labeler.input_spec
  return dataclasses.replace(spec, resolution=int(resolution)) if resolution else spec


def _without_autoencoder(*_):
  raise ValueError("This pretrained teacher was loaded without its autoencoder (the method "
                   "makes no x'), so it has no E or G.")


def teacher_functions(vae, labeler, image_shape, pixel_range, labeler_resolution=0):
  """The tgt.Teacher of a published E/G and T for student images (image_shape, pixel_range).

  vae None: T alone (E and G raise). labeler_resolution > 0 replaces the labeler's
  published input size (smoke runs; a labeler fine-tuned at another size).
  """
  pixel_range = tuple(float(v) for v in pixel_range)
  spec = at_resolution(labeler, labeler_resolution)

  def label(p, x):
    return labeler.apply(p["labeler"], spec.prepare(x, pixel_range))

  if vae is None:
    return tgt.Teacher(encode=_without_autoencoder, decode=_without_autoencoder, label=label,
                       latent_dim=0, pixel_range=pixel_range)
  shape = latent_shape(vae.config, image_shape)

  def encode(p, x):
    z = vae.apply(p["generator"], _linear(x, pixel_range, VAE_RANGE), method=vae.encode_latent)
    return z.reshape(z.shape[0], -1)

  def decode(p, z):
    x = vae.apply(p["generator"], z.reshape(z.shape[0], *shape), method=vae.decode_latent)
    return _linear(jnp.clip(x, *VAE_RANGE), VAE_RANGE, pixel_range)

  return tgt.Teacher(encode=encode, decode=decode, label=label, latent_dim=math.prod(shape),
                     pixel_range=pixel_range)


PARTS = ("generator", "labeler")


def load(vae_dir, labeler_format, labeler_path, image_shape, pixel_range, num_classes=None,
         arch=None, dtype=jnp.float32, mesh=None, parts=PARTS, labeler_resolution=0,
         **labeler_kwargs):
  """(meta, params replicated on `mesh`, tgt.Teacher) of a published teacher.

  num_classes: the labeler head's size, checked against the file (None: the file's).
  parts: ("labeler",) skips the autoencoder (its files are not read).
  meta["labeler_input"] says which size, mean and std the labeler is fed, and from where.
  """
  labeler, labeler_variables = load_labeler(labeler_format, labeler_path, arch, num_classes,
                                            dtype, **labeler_kwargs)
  meta = {"kind": "pretrained", "parts": [p for p in PARTS if p in parts],
          "labeler_format": labeler_format, "labeler_path": str(labeler_path),
          "num_classes": labeler.num_classes,
          "labeler_resolution": at_resolution(labeler, labeler_resolution).resolution,
          "labeler_input": labeler_input(labeler_format, labeler_path, labeler,
                                         labeler_resolution),
          "image_shape": list(image_shape), "pixel_range": [float(v) for v in pixel_range]}
  params = {"labeler": labeler_variables}
  vae = None
  if "generator" in parts:
    vae_config, vae, params["generator"] = autoencoder_kl.load(vae_dir, dtype)
    meta.update(vae_dir=str(vae_dir), latent_shape=list(latent_shape(vae_config, image_shape)))
  functions = teacher_functions(vae, labeler, image_shape, pixel_range, labeler_resolution)
  meta["latent_dim"] = functions.latent_dim
  mesh = mesh if mesh is not None else sharding.make_mesh()
  return meta, sharding.replicate(mesh, params), functions
