"""The synthetic cache as both of its tasks see it: job=synthesize writes it, a student reads it.

Here is what the two must agree on, so neither imports the other: the config block
(`config.tgt_cache`), the methods whose x' a cache can hold, what made a cache
(recorded in its manifest), and the student's checks before it reads one. How a
cache is written lives in tasks/synthesize.py; its file format in data/synthetic_cache.py.
"""

import hashlib
import json

from tgt_jax import checkpointing
from tgt_jax.data import synthetic_cache

# The methods whose x' do not depend on the student, so they can be made once, offline.
CACHEABLE_METHODS = ("tgt_random", "tgt_prior")


def settings(config):
  """The config.tgt_cache block, with defaults for configs that have none."""
  block = config.get("tgt_cache") or {}
  return {"dir": block.get("dir", ""), "samples_per_example": int(block.get(
      "samples_per_example", 16)), "samples": int(block.get("samples", 0))}


def recorded_settings(config, teacher_identity, num_examples):
  """What made the cache: a student must agree on all of it to read the cache."""
  data = config.data.to_dict()
  return {"method": config.method, "sigma": float(config.tgt.sigma), "seed": int(config.seed),
          "num_examples": int(num_examples),
          "data": {k: data.get(k) for k in ("name", "labels_per_class", "imbalance",
                                            "head_count", "num_labels", "index_file")},
          **teacher_identity}


def open_reader(directory):
  """The cache's reader, every shard's sha256 verified first (a damaged one is named)."""
  try:
    return synthetic_cache.Reader(directory)
  except synthetic_cache.CacheDamaged as e:
    raise checkpointing.DamagedArtifact(str(e)) from None


def fingerprint(manifest):
  """A short hash of the manifest (settings, shards and their sha256): which cache a student
  run read, for its recorded identity."""
  return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:16]


def check(manifest, config, cfg, teacher_identity, num_examples, directory):
  """A named error unless the cache was made for this student's config, subset and teacher;
  returns how many of its samples per example the student uses."""
  want = recorded_settings(config, teacher_identity, num_examples)
  have = manifest["settings"]
  differ = [k for k in want if want[k] != have.get(k)]     # parts the student loaded only
  if differ:
    raise ValueError(f"The synthetic cache at {directory!r} was made with other settings: "
                     + "; ".join(f"{k}: cache {have.get(k)!r}, this run {want[k]!r}"
                                 for k in differ)
                     + ". Make a cache for this run (job=synthesize) or point tgt_cache.dir "
                     "at the matching one.")
  used = settings(config)["samples"] or manifest["samples_per_example"]
  if not 1 <= used <= manifest["samples_per_example"]:
    raise ValueError(f"tgt_cache.samples={used}: the cache at {directory!r} holds "
                     f"{manifest['samples_per_example']} samples per example.")
  if cfg.num_samples > used:
    raise ValueError(f"tgt.num_samples={cfg.num_samples} takes that many distinct cached samples "
                     f"of each example per step, but the cache at {directory!r} gives {used} "
                     "(tgt_cache.samples, or its samples_per_example): lower tgt.num_samples, "
                     f"or make a cache with tgt_cache.samples_per_example >= {cfg.num_samples}.")
  return used
