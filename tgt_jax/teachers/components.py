"""A teacher assembled from three separately saved parts: encoder E, generator G, labeler T.

Large teachers are not trained together (BigBiGAN's E and G come from one
place, a strong classifier T from another), so each part is its own directory:

  component.json   {"kind": "encoder"|"generator"|"labeler", "model": <registry name>,
                    "latent_dim", "resolution", "channels", "output_range" (generator),
                    "num_classes", "image_shape" (labeler), ...}
  params/          an orbax StandardCheckpointer checkpoint of the module's variables

`load_teacher` reads the three, checks that they fit each other and the data
(naming the expected and the found value), and restores parameters replicated
on the mesh; `as_functions` turns them into the `tgt.Teacher` the step uses,
resizing between the generator's, the encoder's, the labeler's and the
student's resolutions. The teacher's pixel range is the generator's
`output_range`: the data pipeline must feed real images in that same range
(BigBiGAN: [-1, 1]), since E and T see real and generated images alike.
"""

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from tgt_jax import checkpointing, models, tgt
from tgt_jax.engine import artifacts
from tgt_jax.teachers import generative

COMPONENT_FILE = "component.json"
PARAMS_DIR = generative.PARAMS_DIR
KINDS = ("encoder", "generator", "labeler")
_REQUIRED = {"encoder": ("latent_dim",), "generator": ("latent_dim",),
             "labeler": ("num_classes", "image_shape")}


def build_module(meta, dtype=None):
  """The Flax module a component's metadata names (`dtype`: compute dtype or None)."""
  kind, name = meta["kind"], meta["model"]
  if kind == "encoder":
    return models.encoder(name, int(meta["latent_dim"]), dtype=dtype)
  if kind == "generator":
    module = models.generator(name, None, int(meta["latent_dim"]),
                              tuple(meta.get("output_range", (-1.0, 1.0))), dtype=dtype)
    if not hasattr(module, "resolution"):
      raise ValueError(f"Generator {name!r} is not a latent → image module with its own "
                       "resolution (use a bigbigan_* generator; VAE teachers live in teachers/generative.py).")
    return module
  return models.classifier(name, int(meta["num_classes"]), dtype=dtype)


def init_params(meta, rng):
  """Variables of the module in `meta` (under jax.eval_shape: their shapes only)."""
  module = build_module(meta)
  if meta["kind"] == "encoder":
    x = jnp.zeros((1, module.resolution, module.resolution, int(meta.get("channels", 3))))
  elif meta["kind"] == "generator":
    x = jnp.zeros((1, int(meta["latent_dim"])))
  else:
    x = jnp.zeros((1, *meta["image_shape"]))
  return module.init(rng, x)


def _complete(kind, model_name, meta):
  """Metadata with the kind checked and the module's own sizes filled in."""
  if kind not in KINDS:
    raise ValueError(f"Unknown teacher component kind {kind!r}; expected one of {list(KINDS)}.")
  missing = [key for key in _REQUIRED[kind] if key not in meta]
  if missing:
    raise ValueError(f"A {kind} component needs {list(_REQUIRED[kind])}; missing {missing}.")
  meta = {**meta, "kind": kind, "model": model_name}
  module = build_module(meta)
  if kind == "encoder":
    meta.setdefault("channels", 3)
    meta["resolution"] = int(module.resolution)
  elif kind == "generator":
    meta.update(resolution=int(module.resolution), channels=int(module.channels),
                output_range=[float(v) for v in module.output_range])
  else:
    meta["image_shape"] = [int(v) for v in meta["image_shape"]]
  return meta


def save_component(directory, kind, model_name, params, **meta):
  """Writes params/ (orbax, synchronous) and then component.json, so JSON ⇒ complete.

  `meta` must hold latent_dim (encoder, generator), or num_classes and
  image_shape (labeler: its input shape); output_range defaults to (-1, 1).
  Returns the metadata written.
  """
  meta = _complete(kind, model_name, meta)
  expected = jax.eval_shape(lambda: init_params(meta, jax.random.key(0)))
  artifacts.check_same_shapes(expected, params, lambda *d: _shape_error(d, meta, directory))
  artifacts.save_params_then_json(directory, params, COMPONENT_FILE, meta)
  return meta


def read_component(directory, expected_kind):
  """component.json of the `expected_kind` part in `directory`, or a clear error."""
  path = checkpointing.absolute(directory)
  if not (path / COMPONENT_FILE).exists():
    found = "has no " + COMPONENT_FILE if path.exists() else "does not exist"
    raise FileNotFoundError(
        f"Teacher {expected_kind} directory {os.fspath(directory)!r} (teacher.{expected_kind}_dir)"
        f" {found}: expected a directory written by save_component / init_random_components.")
  meta = json.loads((path / COMPONENT_FILE).read_text())
  if meta.get("kind") != expected_kind:
    raise ValueError(f"{os.fspath(directory)!r} (teacher.{expected_kind}_dir): expected a "
                     f"{expected_kind!r} component, found {meta.get('kind')!r}.")
  return meta


def restore_params(directory, meta, mesh=None):
  """The component's variables, checked against its module and replicated on `mesh`."""
  path = checkpointing.absolute(directory) / PARAMS_DIR
  if not path.exists():
    raise FileNotFoundError(f"Teacher {meta['kind']} at {os.fspath(directory)!r} has "
                            f"{COMPONENT_FILE} but no {PARAMS_DIR}/: it is incomplete.")
  return artifacts.restore_replicated(path, lambda: init_params(meta, jax.random.key(0)), mesh,
                                    lambda *d: _shape_error(d, meta, directory),
                                    checksums=meta.get(artifacts.CHECKSUMS),
                                    what=f"teacher {meta['kind']}")


def _get(tconfig, key):
  """An optional config value; None, "" and 0 mean unset."""
  value = tconfig.get(key) if hasattr(tconfig, "get") else getattr(tconfig, key, None)
  return value or None


def _check_fit(metas, dirs, image_shape, num_classes, latent_dim):
  enc, gen, lab = (metas[k] for k in KINDS)
  where = {k: f"{k} at {os.fspath(dirs[k])!r}" for k in KINDS}
  if int(enc["latent_dim"]) != int(gen["latent_dim"]):
    raise ValueError(f"Teacher parts disagree on the latent size: {where['encoder']} has "
                     f"latent_dim {enc['latent_dim']}, {where['generator']} has "
                     f"{gen['latent_dim']}.")
  checks = [
      ("latent_dim (config teacher.latent_dim)", latent_dim, gen["latent_dim"], "generator"),
      ("number of classes (the dataset's)", num_classes, lab["num_classes"], "labeler"),
      ("image channels (the dataset's)", image_shape[-1], gen["channels"], "generator"),
      ("image channels (the dataset's)", image_shape[-1], lab["image_shape"][-1], "labeler"),
      ("image channels (the dataset's)", image_shape[-1], enc["channels"], "encoder"),
  ]
  for kind in ("encoder", "labeler"):   # parts that record the range they were trained on
    if "pixel_range" in metas[kind]:
      checks.append(("pixel range (the generator's output_range)",
                     [float(v) for v in gen["output_range"]],
                     [float(v) for v in metas[kind]["pixel_range"]], kind))
  for what, expected, found, kind in checks:
    if expected is not None and expected != found:
      raise ValueError(f"Teacher {where[kind]} does not fit: expected {what} {expected}, "
                       f"found {found}.")


def load_teacher(tconfig, image_shape, num_classes, mesh=None):
  """(meta, params) of the teacher whose parts tconfig.{encoder,generator,labeler}_dir name.

  Optional tconfig keys: latent_dim (checked against the parts),
  labeler_image_size (int or (H, W): the size images are resized to for T,
  default the labeler's saved input size; only for size-agnostic labelers such
  as the ResNets), dtype (compute dtype of all three, e.g. "bfloat16").
  params = {"encoder": ..., "generator": ..., "labeler": ...}, replicated on `mesh`.
  """
  dirs = {}
  for kind in KINDS:
    dirs[kind] = _get(tconfig, f"{kind}_dir")
    if dirs[kind] is None:
      raise ValueError(f"config teacher.{kind}_dir is not set: a teacher from parts needs "
                       f"{[k + '_dir' for k in KINDS]}.")
  metas = {kind: read_component(dirs[kind], kind) for kind in KINDS}
  latent_dim = _get(tconfig, "latent_dim")
  _check_fit(metas, dirs, tuple(image_shape), int(num_classes),
             None if latent_dim is None else int(latent_dim))
  params = {kind: restore_params(dirs[kind], metas[kind], mesh) for kind in KINDS}
  size = _get(tconfig, "labeler_image_size") or metas["labeler"]["image_shape"][:2]
  size = [int(size), int(size)] if isinstance(size, (int, float)) else [int(v) for v in size]
  dtype = _get(tconfig, "dtype")
  meta = {**metas, "image_shape": [int(v) for v in image_shape],
          "num_classes": int(num_classes), "latent_dim": int(metas["generator"]["latent_dim"]),
          "pixel_range": metas["generator"]["output_range"], "labeler_image_size": size,
          "dtype": None if dtype is None else jnp.dtype(dtype).name}
  return meta, params


def resize(x, size):
  """Bilinear resize of NHWC images to `size` = (H, W) (antialiased when shrinking).

  Linear weights are non-negative and sum to one, so the output stays within
  the input's range ([-1, 1] in, [-1, 1] out) and gradients flow through it.
  """
  size = tuple(int(v) for v in size)
  if tuple(x.shape[1:3]) == size:
    return x
  return jax.image.resize(x, (x.shape[0], *size, x.shape[3]), method="linear")


def as_functions(meta):
  """The `tgt.Teacher` of pure functions of (params, input) for `load_teacher`'s meta.

  encode: student-size image → E(resize to the encoder's resolution);
  decode: z → resize(G(z)) to the student's (H, W); label: T(resize to the
  labeler's input size).
  """
  dtype = jnp.dtype(meta["dtype"]) if meta.get("dtype") else None
  encoder, generator, labeler = (build_module(meta[kind], dtype) for kind in KINDS)
  student_size = meta["image_shape"][:2]
  encoder_size = (meta["encoder"]["resolution"],) * 2
  labeler_size = meta["labeler_image_size"]
  return tgt.Teacher(
      encode=lambda p, x: encoder.apply(p["encoder"], resize(x, encoder_size)),
      decode=lambda p, z: resize(generator.apply(p["generator"], z), student_size),
      label=lambda p, x: labeler.apply(p["labeler"], resize(x, labeler_size)),
      latent_dim=int(meta["latent_dim"]),
      pixel_range=tuple(float(v) for v in meta["pixel_range"]))


def init_random_components(directory_root, image_shape, num_classes,
                           encoder="bigbigan_encoder_tiny", generator="bigbigan_generator_tiny",
                           labeler="resnet_tiny", seed=0, latent_dim=120,
                           pixel_range=(-1.0, 1.0)):
  """RANDOM, UNTRAINED teacher parts: for CPU smoke runs and tests ONLY.

  A teacher made by this function labels noise with noise; no result obtained
  with it means anything. Writes `<root>/{encoder,generator,labeler}` and
  returns {"encoder_dir": ..., "generator_dir": ..., "labeler_dir": ...}, ready
  to merge into config.teacher.
  """
  root = checkpointing.absolute(directory_root)
  pixel_range = [float(v) for v in pixel_range]
  parts = {
      "encoder": (encoder, dict(latent_dim=latent_dim, pixel_range=pixel_range)),
      "generator": (generator, dict(latent_dim=latent_dim, output_range=pixel_range)),
      "labeler": (labeler, dict(num_classes=num_classes, image_shape=list(image_shape),
                                pixel_range=pixel_range)),
  }
  dirs = {}
  for i, (kind, (name, meta)) in enumerate(parts.items()):
    meta["random_init"] = True
    init = functools.partial(init_params, _complete(kind, name, meta), jax.random.key(0))
    params = random_params(jax.eval_shape(init), seed + i)
    save_component(root / kind, kind, name, params, **meta)
    dirs[f"{kind}_dir"] = os.fspath(root / kind)
  return dirs


def random_params(abstract, seed=0):
  """Fan-in-scaled Gaussian kernels, unit scales, zero biases, drawn with numpy.

  A quick random init for the shapes in `abstract` (e.g. jax.eval_shape of an
  init): XLA takes seconds per module to compile Flax's initialisers on CPU.
  """
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    name = jax.tree_util.keystr(path[-1:])
    if "scale" in name:
      return np.ones(leaf.shape, leaf.dtype)
    if "kernel" not in name:
      return np.zeros(leaf.shape, leaf.dtype)
    fan_in = int(np.prod(leaf.shape[:-1]))
    return (rng.standard_normal(leaf.shape) / np.sqrt(fan_in)).astype(leaf.dtype)
  return jax.tree_util.tree_map_with_path(draw, abstract)


def _shape_error(diff, meta, directory):
  name, expected, found = diff
  raise ValueError(
      f"Teacher {meta['kind']} parameters in {os.fspath(directory)!r} do not match "
      f"model {meta['model']!r} as described in {COMPONENT_FILE}: parameter {name} "
      f"expected shape {expected}, found {found}.")

