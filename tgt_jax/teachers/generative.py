"""The frozen generative teacher (E, G, T): save, load, and check it fits the data.

On disk a teacher is a directory with `teacher.json` (model names, shapes,
quality metrics) and `params/` (an orbax checkpoint of
`{'generator': ..., 'labeler': ...}`). Loading rebuilds the modules from the
JSON, restores parameters against their expected shapes, and refuses, naming
the expected and the found value, a teacher that does not fit the data.
"""

import hashlib
import json
import logging
import os

import jax
import jax.numpy as jnp
from etils import epath

from tgt_jax import checkpointing, models, tgt
from tgt_jax.engine import artifacts

META_FILE = "teacher.json"
PARTS = ("generator", "labeler")     # E and G (one VAE), T
PARAMS_DIR = artifacts.PARAMS_DIR

DamagedArtifact = checkpointing.DamagedArtifact   # a file that is there but does not read


def build_modules(meta, dtype=None):
  """Flax modules (generator, labeler) described by teacher metadata; `dtype` the compute
  dtype (None: float32, how they were trained)."""
  vocab_size = meta.get("vocab_size")       # text teachers only
  generator = models.generator(meta["generator"], meta["image_shape"], meta["latent_dim"],
                               meta["pixel_range"], dtype=dtype, vocab_size=vocab_size)
  labeler = models.classifier(meta["labeler"], meta["num_classes"], dtype, vocab_size=vocab_size)
  return generator, labeler


def as_functions(meta, dtype=None):
  """The `tgt.Teacher` of pure functions for a teacher with metadata `meta`."""
  generator, labeler = build_modules(meta, dtype)
  return tgt.Teacher(
      encode=lambda p, x: generator.apply(p["generator"], x, method=generator.encode)[0],
      decode=lambda p, z: generator.apply(p["generator"], z, method=generator.decode),
      label=lambda p, x: labeler.apply(p["labeler"], x),
      latent_dim=int(meta["latent_dim"]),
      pixel_range=tuple(meta["pixel_range"]),
      decode_soft=(lambda p, z: generator.apply(p["generator"], z, method=generator.decode_soft))
      if hasattr(generator, "decode_soft") else None)


def parts_of(meta):
  """The parts a teacher holds: both, or the labeler alone (what KD needs, no generator)."""
  return tuple(meta.get("parts", PARTS))


def init_params(meta, rng):
  """Fresh parameters of the teacher's parts (each part's key is the same whichever are held).

  One jitted call: run op by op, a conv VAE's init is ~90 small compilations (20 s of a
  53 s smoke teacher on 2 cores)."""
  generator, labeler = build_modules(meta)
  x = jnp.zeros((1, *meta["image_shape"]), meta.get("input_dtype", "float32"))
  parts = parts_of(meta)

  @jax.jit
  def init(rng):
    rng_g, rng_l, rng_s = jax.random.split(rng, 3)
    made = {"generator": lambda: generator.init(rng_g, x, rng_s),
            "labeler": lambda: labeler.init(rng_l, x)}
    return {part: made[part]() for part in parts}

  return init(rng)


def exists(directory):
  return epath.Path(directory, META_FILE).exists()


def remove_meta(directory):
  """Unmarks a teacher as complete (process 0), before its parameters are rewritten."""
  if jax.process_index() == 0:
    epath.Path(directory, META_FILE).unlink(missing_ok=True)


def save(directory, meta, params):
  """Writes params (orbax, synchronous) and then teacher.json, so JSON ⇒ complete."""
  artifacts.save_params_then_json(directory, params, META_FILE, meta)


def read_meta(directory):
  path = epath.Path(directory, META_FILE)
  if not path.exists():
    raise FileNotFoundError(
        f"No teacher at {os.fspath(directory)!r}: {META_FILE} is missing. Train one with "
        "--config=configs/digits_teacher.py or point config.teacher.dir at a teacher directory.")
  try:
    meta = json.loads(path.read_text())
  except (ValueError, UnicodeDecodeError) as e:   # JSONDecodeError is a ValueError
    raise DamagedArtifact(f"{os.fspath(path)} is not valid JSON "
                          f"({checkpointing.first_line(e)}): the teacher is damaged; train it "
                          "again or point the config at another teacher directory.") from None
  if not isinstance(meta, dict):
    raise DamagedArtifact(f"{os.fspath(path)} holds a JSON {type(meta).__name__}, not an object "
                          "of teacher metadata: the teacher is damaged; train it again.")
  return meta


def check_part_identities(meta, wanted, parts, directory):
  """ArtifactMismatch naming each setting that differs for each of `parts` a teacher holds:
  a part that exists is read, never trained again under other settings."""
  recorded = meta.get("part_identity")
  if recorded is None:
    if parts:
      logging.warning("The teacher at %s records no settings for its parts (made before "
                      "teachers did): they cannot be checked against this run's.", directory)
    return
  for part in parts:
    artifacts.check_identity(
        recorded.get(part, {}), wanted[part], f"teacher's {part}", directory,
        "a teacher part that exists is never trained again; run with the settings it was made "
        "with, or point teacher.dir at another directory")


def fingerprint(directory):
  """A short hash of teacher.json (models, shapes, training report), or None where absent:
  which teacher a run used, for its run identity (workdir.record_or_check)."""
  path = epath.Path(directory, META_FILE)
  return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.exists() else None


def vocabulary_fingerprint(vocabulary):
  """A short hash of the token list: a text teacher fits only data with the same vocabulary."""
  return hashlib.sha256("\n".join(vocabulary).encode()).hexdigest()[:16]


def check_fits(meta, image_shape, num_classes, latent_dim=None, source="teacher",
               vocabulary=None):
  """Errors that name both the expected and the found value."""
  checks = [("image shape", tuple(image_shape), tuple(meta["image_shape"])),
            ("number of classes", int(num_classes), int(meta["num_classes"]))]
  if latent_dim:
    checks.append(("latent size", int(latent_dim), int(meta["latent_dim"])))
  if vocabulary is not None or meta.get("vocab_size"):
    checks.append(("vocabulary size", len(vocabulary or ()), meta.get("vocab_size")))
    checks.append(("vocabulary fingerprint", vocabulary and
                   vocabulary_fingerprint(vocabulary),
                   meta.get("vocabulary_fingerprint")))
  for what, expected, found in checks:
    if expected != found:
      raise ValueError(f"The {source} does not fit: the data/config expects {what} {expected}, "
                       f"the teacher has {found}.")


def load(directory, image_shape, num_classes, latent_dim=None, mesh=None, vocabulary=None):
  """(meta, params) of the teacher in `directory`, checked against the data.

  Parameters come back replicated on `mesh` (default: all devices), whatever
  topology they were saved from.
  """
  meta = read_meta(directory)
  check_fits(meta, image_shape, num_classes, latent_dim, source=f"teacher at {directory!r}",
             vocabulary=vocabulary)
  path = checkpointing.absolute(directory) / PARAMS_DIR
  if not path.exists():
    raise FileNotFoundError(f"Teacher at {os.fspath(directory)!r} has {META_FILE} but no "
                            f"{PARAMS_DIR}/: it is incomplete; train it again.")
  params = artifacts.restore_replicated(path, lambda: init_params(meta, jax.random.key(0)), mesh,
                                        lambda *diff: _shape_error(diff, meta, directory),
                                        checksums=meta.get(artifacts.CHECKSUMS), what="teacher")
  return meta, params


def _shape_error(diff, meta, directory):
  name, expected, found = diff
  models_named = (f"generator {meta['generator']!r}, labeler {meta['labeler']!r}, latent "
                  f"{meta['latent_dim']}, image {tuple(meta['image_shape'])}")
  raise ValueError(
      f"Teacher parameters in {os.fspath(directory)!r} do not match the models named in "
      f"{META_FILE} ({models_named}): parameter {name} expected shape {expected}, found {found}.")
