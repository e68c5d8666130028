"""How each kind of image/text teacher validates and loads (kinds.py registers them).

  ""           trained by tgt_jax (training.py) in teacher.dir or WORKDIR/teacher; a part
               a method needs and the directory lacks is trained there, under the
               directory's lock, when teacher.train_if_missing allows
  components   E, G and T from three directories in tgt_jax's part format (components.py)
  pretrained   published files: a diffusers AutoencoderKL as E and G, BiT or timm as T

Every loader returns a LoadedTeacher, whose `identity` is what a student records so that
a resume distils from the same teacher: the hash of each part's parameters and, for
published files, their sha256. A part that exists is read, never trained again: one made
with other settings is a named error (engine/artifacts.py, "the artifact rule").
"""

import dataclasses
import json
import logging
import os
from typing import Any, Optional

import jax.numpy as jnp
from etils import epath

from tgt_jax import models, tgt
from tgt_jax.engine import artifacts
from tgt_jax.models import bit
from tgt_jax.teachers import components, generative, pretrained, training


@dataclasses.dataclass
class LoadedTeacher:
  """A teacher as every caller gets it (empty for a method that needs none)."""
  directory: Optional[str] = None     # where it was read from, for results.json
  meta: Optional[dict] = None
  params: Any = None                  # {part: variables}, replicated on the mesh
  functions: Optional[tgt.Teacher] = None
  identity: dict = dataclasses.field(default_factory=dict)


DTYPES = {"": jnp.float32, "float32": jnp.float32, "bfloat16": jnp.bfloat16}


def check_dtype(tconfig):
  """teacher.dtype, the compute dtype of a pretrained or tgt_jax-trained teacher."""
  if tconfig.get("dtype", "") not in DTYPES:
    raise ValueError(f"Unknown teacher.dtype {tconfig.dtype!r}; choose one of "
                     f"{[d for d in DTYPES if d]} (or '' for float32).")


def fingerprints(params, parts):
  """{teacher_params.<part>: hash} of the parts a student reads."""
  return {f"teacher_params.{part}": artifacts.params_fingerprint(params[part])
          for part in sorted(parts)}


# -- trained by tgt_jax ---------------------------------------------------------------------


def _check_numbers(tconfig):
  for key, low in (("latent_dim", 1), ("generator_steps", 0), ("labeler_steps", 0),
                   ("kl_warmup_steps", 0), ("batch_size", 1), ("seed", 0)):
    value = tconfig.get(key, low)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
      raise ValueError(f"teacher.{key} must be a whole number >= {low}, got {value!r}.")
  for key in ("learning_rate", "pixel_sigma", "beta"):
    value = tconfig.get(key, 1.0)
    if not (isinstance(value, (int, float)) and 0 <= value < float("inf")) or (
        key != "beta" and value == 0):
      raise ValueError(f"teacher.{key} must be a finite number > 0 (beta: >= 0), got "
                       f"{value!r}.")


def validate_trained(config):
  tconfig = config.teacher
  if tconfig.generator not in models.GENERATORS:
    raise ValueError(f"Unknown generator model name {tconfig.generator!r}; "
                     f"known: {sorted(models.GENERATORS)}.")
  models.check_classifier(tconfig.labeler)
  check_dtype(tconfig)
  _check_numbers(tconfig)


def _parts_to_train(directory, parts, wanted):
  """The parts of `parts` the teacher in `directory` lacks; a held one made with other
  settings than `wanted` is an ArtifactMismatch (it is never trained again)."""
  if not generative.exists(directory):
    return [p for p in generative.PARTS if p in parts]
  meta = generative.read_meta(directory)
  held = generative.parts_of(meta)
  generative.check_part_identities(meta, wanted, [p for p in parts if p in held], directory)
  return [p for p in parts if p not in held]


def load_trained(config, workdir, source, mesh, parts, may_train):
  """The teacher trained by tgt_jax; parts it lacks are trained first when allowed."""
  tconfig = config.teacher
  directory = training.teacher_dir(config, workdir)
  wanted = training.part_identities(tconfig, source)
  missing = _parts_to_train(directory, parts, wanted)
  if missing:
    held = generative.parts_of(generative.read_meta(directory)) if generative.exists(
        directory) else ()
    if not may_train:
      raise FileNotFoundError(
          f"The teacher at {directory!r} lacks {missing} and this job only reads teachers: "
          "train it first (configs/<data>_teacher.py or job=teacher with the same teacher "
          "settings), or point teacher.dir at a complete teacher.")
    if not tconfig.train_if_missing:
      if not held:
        generative.read_meta(directory)     # raises the clear "no teacher here" error
      raise ValueError(f"The teacher at {directory!r} holds {list(held)}, and method "
                       f"{config.method!r} also needs its {missing}: set "
                       "teacher.train_if_missing=True to train them there, or point "
                       "teacher.dir at a complete teacher.")
    with artifacts.writing(directory, "teacher", config_key="teacher.dir"):
      missing = _parts_to_train(directory, parts, wanted)    # another writer may have made them
      if missing:
        training.add_parts(config.teacher, source, mesh, directory, missing, wanted)
  meta, params = generative.load(directory, source.image_shape, source.num_classes,
                                 latent_dim=tconfig.latent_dim, mesh=mesh,
                                 vocabulary=source.vocabulary)
  return LoadedTeacher(directory, meta, params,
                       generative.as_functions(meta, DTYPES[tconfig.get("dtype", "")] if
                                               tconfig.get("dtype", "") else None),
                       fingerprints(params, parts))


# -- from parts -----------------------------------------------------------------------------


def validate_components(config):
  for key, known in (("encoder", models.ENCODERS), ("generator", models.GENERATORS),
                     ("labeler", models.CLASSIFIERS)):
    if config.teacher[key] not in known:
      raise ValueError(f"Unknown teacher.{key} model name {config.teacher[key]!r}; "
                       f"known: {sorted(known)}.")


def load_components(config, workdir, source, mesh, parts, may_train):
  """E, G and T from config.teacher.{encoder,generator,labeler}_dir (BigBiGAN-shaped)."""
  tconfig = config.teacher.to_dict()
  missing = [k for k in ("encoder_dir", "generator_dir", "labeler_dir")
             if not tconfig.get(k) or not epath.Path(tconfig[k]).exists()]
  if missing and tconfig.get("random_init_if_missing"):
    if not may_train:
      raise FileNotFoundError(f"Teacher parts {missing} are missing and this job only reads "
                              "teachers: set them to existing part directories.")
    logging.warning("Teacher parts %s missing: writing RANDOM untrained parts (smoke runs "
                    "only; config.teacher.random_init_if_missing).", missing)
    root = epath.Path(workdir) / "random_teacher_parts"
    with artifacts.writing(root, "random teacher parts"):
      tconfig.update(components.init_random_components(
          root, source.image_shape, source.num_classes, encoder=tconfig["encoder"],
          generator=tconfig["generator"], labeler=tconfig["labeler"],
          latent_dim=tconfig["latent_dim"], pixel_range=source.pixel_range))
  meta, params = components.load_teacher(tconfig, source.image_shape, source.num_classes, mesh)
  return LoadedTeacher(tconfig.get("labeler_dir"), meta, params, components.as_functions(meta),
                       fingerprints(params, ("encoder", "generator", "labeler")
                                    if "generator" in parts else ("labeler",)))


# -- published files ------------------------------------------------------------------------

_PRETRAINED_HELP = {
    "vae_dir": "a diffusers AutoencoderKL directory (config.json and "
               "diffusion_pytorch_model.safetensors), e.g. a copy of "
               "huggingface.co/stabilityai/sd-vae-ft-mse",
    "labeler_file": "a BiT .npz or a timm model.safetensors"}


def validate_pretrained(config):
  tconfig = config.teacher
  for key in ("vae_dir", "labeler_file"):
    if not tconfig.get(key):
      raise ValueError(f"teacher.kind='pretrained' needs teacher.{key}: "
                       f"{_PRETRAINED_HELP[key]}.")
  if tconfig.get("labeler_format") not in pretrained.LABELER_FORMATS:
    raise ValueError(f"Unknown teacher.labeler_format {tconfig.get('labeler_format')!r}; "
                     f"choose one of {list(pretrained.LABELER_FORMATS)}.")
  if tconfig.get("labeler_pool_padding", "") not in ("",) + bit.POOL_PADDINGS:
    raise ValueError(f"Unknown teacher.labeler_pool_padding {tconfig.labeler_pool_padding!r}; "
                     f"choose one of {list(bit.POOL_PADDINGS)} (or '' for the file's layout's).")
  if int(tconfig.get("labeler_resolution", 0)) < 0:
    raise ValueError(f"teacher.labeler_resolution={tconfig.labeler_resolution}: give a size in "
                     "pixels, or 0 for the labeler's published one.")
  pretrained.validate_options(tconfig)
  check_dtype(tconfig)


def published_files(config, parts):
  """The published files a pretrained teacher's `parts` are read from."""
  files = [config.teacher.labeler_file]
  if "generator" in parts:
    vae = epath.Path(config.teacher.vae_dir)
    files += [os.fspath(vae / name) for name in ("config.json",
                                                  "diffusion_pytorch_model.safetensors")]
  return [f for f in files if epath.Path(f).exists()]


def load_pretrained(config, workdir, source, mesh, parts, may_train):
  """E, G from a diffusers AutoencoderKL and T from a BiT/timm file (teachers/pretrained.py);
  `parts` ("labeler",) reads the labeler's file alone. Nothing is written."""
  del workdir, may_train
  t = config.teacher
  kwargs = {}
  if t.labeler_format == "bit":
    kwargs["groups"] = int(t.labeler_groups)
    if t.get("labeler_pool_padding"):
      kwargs["pool_padding"] = t.labeler_pool_padding
  meta, params, functions = pretrained.load(
      t.vae_dir, t.labeler_format, t.labeler_file, source.image_shape, source.pixel_range,
      source.num_classes, arch=t.get("labeler_arch") or None, dtype=DTYPES[t.get("dtype", "")],
      mesh=mesh, parts=parts, labeler_resolution=int(t.get("labeler_resolution", 0)), **kwargs)
  # A published file carries no checksum of its own: its sha256 joins the student's identity
  # on first use, so a file that changes under a resumed run is named.
  identity = {**fingerprints(params, parts),
              **{f"sha256 of {f}": artifacts.sha256_of(f) for f in published_files(config, parts)}}
  where = t.vae_dir if "generator" in parts else t.labeler_file
  return LoadedTeacher(where, meta, params, functions, identity)
