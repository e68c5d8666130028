"""The student's teacher: which one the config names, loaded (or trained first) on the mesh.

Three kinds (config.teacher.kind):
  ""            trained by tgt_jax (teachers/training.py), in config.teacher.dir or WORKDIR/teacher
  components    E, G and T from three directories in tgt_jax's part format (teacher_components.py)
  pretrained    published weights: a diffusers AutoencoderKL as E and G, BiT or timm as T
A method that needs no teacher (ce) loads none.
"""

import dataclasses
import hashlib
import json
import logging
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from tgt_jax import models, tgt
from tgt_jax.models import bit
from tgt_jax.teachers import generative
from tgt_jax.teachers import components as teacher_components
from tgt_jax.teachers import pretrained
from tgt_jax.teachers import training


@dataclasses.dataclass
class LoadedTeacher:
  directory: Optional[str] = None
  meta: Optional[dict] = None
  params: Any = None
  functions: Optional[tgt.Teacher] = None


def is_component_teacher(config):
  return config.teacher.get("kind", "") == "components"


def is_pretrained_teacher(config):
  return config.teacher.get("kind", "") == "pretrained"


_DTYPES = {"": jnp.float32, "float32": jnp.float32, "bfloat16": jnp.bfloat16}


def _check_dtype(tconfig):
  """teacher.dtype, the compute dtype of a pretrained or tgt_jax-trained teacher."""
  if tconfig.get("dtype", "") not in _DTYPES:
    raise ValueError(f"Unknown teacher.dtype {tconfig.dtype!r}; choose one of "
                     f"{[d for d in _DTYPES if d]} (or '' for float32).")


def _validate_pretrained(tconfig):
  for key in ("vae_dir", "labeler_file"):
    if not tconfig.get(key):
      raise ValueError(f"teacher.kind='pretrained' needs teacher.{key}: " + {
          "vae_dir": "a diffusers AutoencoderKL directory (config.json and "
                     "diffusion_pytorch_model.safetensors), e.g. a copy of "
                     "huggingface.co/stabilityai/sd-vae-ft-mse",
          "labeler_file": "a BiT .npz or a timm model.safetensors"}[key] + ".")
  if tconfig.get("labeler_format") not in pretrained.LABELER_FORMATS:
    raise ValueError(f"Unknown teacher.labeler_format {tconfig.get('labeler_format')!r}; "
                     f"choose one of {list(pretrained.LABELER_FORMATS)}.")
  if tconfig.labeler_format == "timm" and not tconfig.get("labeler_arch"):
    raise ValueError("teacher.labeler_format='timm' needs teacher.labeler_arch (e.g. 'resnet50').")
  if tconfig.get("labeler_pool_padding", "") not in ("",) + bit.POOL_PADDINGS:
    raise ValueError(f"Unknown teacher.labeler_pool_padding {tconfig.labeler_pool_padding!r}; "
                     f"choose one of {list(bit.POOL_PADDINGS)} (or '' for the file's layout's).")
  if int(tconfig.get("labeler_resolution", 0)) < 0:
    raise ValueError(f"teacher.labeler_resolution={tconfig.labeler_resolution}: give a size in "
                     "pixels, or 0 for the labeler's published one.")
  _check_dtype(tconfig)


def load_pretrained_teacher(config, source, mesh, parts=pretrained.PARTS):
  """E, G from a diffusers AutoencoderKL and T from a BiT/timm file (teachers/pretrained.py);
  `parts` ("labeler",) reads the labeler's file alone."""
  t = config.teacher
  kwargs = {}
  if t.labeler_format == "bit":
    kwargs["groups"] = int(t.labeler_groups)
    if t.get("labeler_pool_padding"):
      kwargs["pool_padding"] = t.labeler_pool_padding
  return pretrained.load(t.vae_dir, t.labeler_format, t.labeler_file, source.image_shape,
                         source.pixel_range, source.num_classes,
                         arch=t.get("labeler_arch") or None, dtype=_DTYPES[t.get("dtype", "")],
                         mesh=mesh, parts=parts,
                         labeler_resolution=int(t.get("labeler_resolution", 0)), **kwargs)


def validate(config):
  """The teacher's model names, before anything is trained."""
  tconfig = config.teacher
  if is_component_teacher(config):
    for key, known in (("encoder", models.ENCODERS), ("generator", models.GENERATORS),
                       ("labeler", models.CLASSIFIERS)):
      if tconfig[key] not in known:
        raise ValueError(f"Unknown teacher.{key} model name {tconfig[key]!r}; "
                         f"known: {sorted(known)}.")
    return
  if is_pretrained_teacher(config):
    _validate_pretrained(tconfig)
    return
  if tconfig.get("kind", ""):
    raise ValueError(f"Unknown teacher.kind {tconfig.kind!r}; choose '' (trained by tgt_jax), "
                     "'components' or 'pretrained'.")
  if tconfig.generator not in models.GENERATORS:
    raise ValueError(f"Unknown generator model name {tconfig.generator!r}; "
                     f"known: {sorted(models.GENERATORS)}.")
  models.check_classifier(tconfig.labeler)
  _check_dtype(tconfig)


def teacher_functions(meta, dtype=""):
  """tgt.Teacher of a loaded teacher: one trained by tgt_jax (computing in `dtype`, '' for
  float32), or one from three parts."""
  if "encoder" in meta and isinstance(meta["encoder"], dict):
    return teacher_components.as_functions(meta)
  return generative.as_functions(meta, _DTYPES[dtype] if dtype else None)


def load_component_teacher(config, workdir, source, mesh):
  """E, G and T from config.teacher.{encoder,generator,labeler}_dir (BigBiGAN-shaped)."""
  tconfig = config.teacher.to_dict()
  missing = [k for k in ("encoder_dir", "generator_dir", "labeler_dir")
             if not tconfig.get(k) or not epath.Path(tconfig[k]).exists()]
  if missing and tconfig.get("random_init_if_missing"):
    logging.warning("Teacher parts %s missing: writing RANDOM untrained parts (smoke runs "
                    "only; config.teacher.random_init_if_missing).", missing)
    tconfig.update(teacher_components.init_random_components(
        epath.Path(workdir) / "random_teacher_parts", source.image_shape, source.num_classes,
        encoder=tconfig["encoder"], generator=tconfig["generator"], labeler=tconfig["labeler"],
        latent_dim=tconfig["latent_dim"], pixel_range=source.pixel_range))
  return teacher_components.load_teacher(tconfig, source.image_shape, source.num_classes, mesh)


def parts_needed(cfg):
  """The teacher parts a method calls: the labeler always; the VAE only to make x'."""
  return generative.PARTS if cfg.uses_synthetic else ("labeler",)


def load_or_train_teacher(config, workdir, source, mesh, parts=generative.PARTS):
  """(meta, params) of the configured teacher; trains and saves it first if missing and allowed.

  A teacher that lacks one of `parts` (a labeler-only one, trained for KD) gets the
  missing part trained next to it when config.teacher.train_if_missing allows; its
  labeler resumes at its last checkpoint and is not trained again.
  """
  if is_component_teacher(config):
    return load_component_teacher(config, workdir, source, mesh)
  directory = training.teacher_dir(config, workdir)
  held = generative.parts_of(generative.read_meta(directory)) if generative.exists(directory) else ()
  missing = [p for p in parts if p not in held]
  if missing:
    if not config.teacher.train_if_missing:
      if not held:
        generative.read_meta(directory)     # raises the clear "no teacher here" error
      raise ValueError(f"The teacher at {directory!r} holds {list(held)}, and method "
                       f"{config.method!r} also needs its {missing}: set "
                       "teacher.train_if_missing=True to train them there, or point "
                       "teacher.dir at a complete teacher.")
    want = tuple(p for p in generative.PARTS if p in set(parts) | set(held))
    logging.info("Teacher in %s lacks %s: training %s (config.teacher).", directory, missing,
                 list(want))
    meta, params, report = training.train(config.teacher, source, mesh, seed=0,
                                          run_dir=training.run_dir_of(directory), parts=want)
    meta["report"] = report
    if held:     # the JSON marks a complete teacher: gone until the new params are written
      generative.remove_meta(directory)
    generative.save(directory, meta, params)
    logging.info("Teacher report: %s", json.dumps(report))
  return generative.load(directory, source.image_shape, source.num_classes,
                         latent_dim=config.teacher.latent_dim, mesh=mesh,
                         vocabulary=source.vocabulary)


def params_fingerprint(tree):
  """A short hash of a parameter tree (names, shapes, dtypes, values). Reads each process's
  own replica, so it works on a pod."""
  digest = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    value = np.asarray(leaf.addressable_data(0) if hasattr(leaf, "addressable_data") else leaf)
    digest.update(f"{jax.tree_util.keystr(path)}{value.dtype}{value.shape}".encode())
    digest.update(value.tobytes())
  return digest.hexdigest()[:16]


def teacher_identity(params, cfg):
  """{teacher_params.<part>: hash} of the parts a method reads (the labeler; every part to
  make x'): which teacher a student distils from, whatever its directory or JSON say."""
  parts = sorted(params) if cfg.uses_synthetic else ["labeler"]
  return {f"teacher_params.{part}": params_fingerprint(params[part]) for part in parts}


def load_teacher(config, workdir, source, mesh):
  """(meta, params, tgt.Teacher) of the configured teacher with every part (E, G and T)."""
  if is_pretrained_teacher(config):
    return load_pretrained_teacher(config, source, mesh)
  meta, params = load_or_train_teacher(config, workdir, source, mesh)
  return meta, params, teacher_functions(meta, config.teacher.get("dtype", ""))


def teacher_for(config, cfg, workdir, source, mesh, parts=None):
  """The LoadedTeacher a student with TGT config `cfg` needs (empty for ce).

  parts: the teacher parts to load (None: those the method calls; a student reading
  x' from a cache needs ("labeler",)). eval_only loads nothing but the teacher's JSON
  (for the report in results.json).
  """
  parts = parts or parts_needed(cfg)
  if not (cfg.alpha_eff > 0 or cfg.lam_eff > 0):
    return LoadedTeacher()
  if is_pretrained_teacher(config):
    if config.eval_only:
      return LoadedTeacher(config.teacher.vae_dir)
    meta, params, functions = load_pretrained_teacher(config, source, mesh, parts)
    where = config.teacher.vae_dir if "generator" in parts else config.teacher.labeler_file
    return LoadedTeacher(where, meta, params, functions)
  directory = training.teacher_dir(config, workdir)
  if config.eval_only:
    meta = (generative.read_meta(directory)
            if not is_component_teacher(config) and generative.exists(directory) else None)
    return LoadedTeacher(directory, meta)
  meta, params = load_or_train_teacher(config, workdir, source, mesh, parts)
  return LoadedTeacher(directory, meta, params,
                       teacher_functions(meta, config.teacher.get("dtype", "")))
