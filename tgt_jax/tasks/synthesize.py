"""job=synthesize: the exploration that does not depend on the student, done once, offline.

TGT-random and TGT-prior draw x' = G(z') with z' = E(x) + σ·ε or z' ~ N(0, I): the
student plays no part, so the samples and their labels T(x') can be made once and
streamed by every student run (and every seed of a sweep that shares the subset)
instead of paying E, G and T at every step. This job writes N = config.tgt_cache.
samples_per_example samples of every labelled example, with T(x') as full logits
(for 1,000 classes they are 4 kB a sample next to an image's 600 kB, so top-k would
save little), into data/synthetic_cache.py's ArrayRecord shards: each process makes
and writes its own contiguous part of the examples; process 0 writes the manifest
when every part is done. Sample j of example e comes from the key (seed, e) alone,
so the cache does not depend on the number of processes or the batch size.

The student streams it with --config.tgt_cache.dir=DIR (tasks/classification.py):
the same loss as online exploration, with x' and T(x') read from the cache; T(x) on
the real batch stays online. The manifest records what made the cache (method, σ,
subset, seed, the teacher's parameter hashes), and a student whose config disagrees
is refused by name. What the writer and the student agree on is tasks/cache.py.
"""

import logging
import time

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath
from jax.experimental import multihost_utils

from tgt_jax import sharding, tgt
from tgt_jax.data import sources, synthetic_cache
from tgt_jax.engine import artifacts
from tgt_jax.tasks import cache, method
from tgt_jax.teachers import kinds

DEFAULT_DIR = "synthetic"
CHUNK = 64                 # examples per jitted call (padded up to the device count)
IDENTITY_FILE = "cache_identity.json"
cache_fingerprint = cache.fingerprint     # where callers found it before tasks/cache.py


def cache_dir(config, workdir):
  return cache.settings(config)["dir"] or str(epath.Path(workdir) / DEFAULT_DIR)


def validate(config):
  if config.method not in cache.CACHEABLE_METHODS:
    raise ValueError(f"job=synthesize makes samples that do not depend on the student: method "
                     f"must be one of {list(cache.CACHEABLE_METHODS)}, not {config.method!r}.")
  if config.data.name not in sources.IN_MEMORY and config.data.get("reader") == "tf_data":
    raise ValueError("job=synthesize reads the labelled subset by index: it needs in-memory "
                     "data or data.reader='random_access' (ArrayRecord), not "
                     "data.reader='tf_data'.")
  if cache.settings(config)["samples_per_example"] < 1:
    raise ValueError("tgt_cache.samples_per_example must be >= 1, got "
                     f"{cache.settings(config)['samples_per_example']}.")
  method.tgt_config(config)
  kinds.validate(config)


def make_synthesize(cfg, teacher, samples, mesh):
  """Jitted (teacher params, keys [n], x [n, ...], y [n]) → (x' [n, N, ...], T(x') [n, N, C]);
  y is what a class-conditional teacher makes x' under (unused by the others)."""
  many = tgt.TGTConfig(method=cfg.method, sigma=cfg.sigma, num_samples=samples)

  def one(params, key, x, y):
    x_syn = tgt.synthesize(key, many, teacher, params, None, None, x[None], labels=y[None])
    return x_syn, teacher.label(params, x_syn)

  rows = sharding.batch_sharded(mesh)
  return jax.jit(jax.vmap(one, in_axes=(None, 0, 0, 0)),
                 in_shardings=(sharding.replicated(mesh), rows, rows, rows), out_shardings=rows)


def _examples_of(labelled):
  """rows → (images, labels) of the labelled subset: in memory, or read by index (TFDS
  ArrayRecord)."""
  if hasattr(labelled, "images"):
    return lambda rows: (labelled.images[rows], labelled.labels[rows])

  def read(rows):
    batch = labelled.read(rows)
    return batch["image"], batch["label"]
  return read


def _chunks(fn, params, examples, first, count, seed, mesh):
  """This process's records, CHUNK examples at a time (each call sees every device);
  examples(rows) gives the labelled examples' (images, labels)."""
  devices = mesh.devices.size
  width = -(-CHUNK // devices) * devices
  for start in range(first, first + count, width):
    ids = np.arange(start, min(start + width, first + count))
    padded = np.concatenate([ids, np.full(width - len(ids), ids[-1])])
    keys = jax.vmap(lambda e: jax.random.fold_in(jax.random.key(seed), e))(jnp.asarray(padded))
    images, labels = examples(padded)
    x_syn, logits = jax.device_get(fn(params, keys, jnp.asarray(images),
                                      jnp.asarray(labels, jnp.int32)))
    n, samples = len(ids), x_syn.shape[1]
    yield {"synthetic_image": x_syn[:n].reshape(n * samples, *x_syn.shape[2:]),
           "synthetic_teacher_logits": logits[:n].reshape(n * samples, -1).astype(np.float32),
           "example_id": np.repeat(ids, samples).astype(np.int32),
           "sample_id": np.tile(np.arange(samples), n).astype(np.int32)}


def run(config, workdir):
  """Writes the cache (resuming: a finished shard is kept) and results.json."""
  start = time.time()
  directory = cache_dir(config, workdir)
  samples = cache.settings(config)["samples_per_example"]
  cfg = method.tgt_config(config)
  source = sources.make_source(config)
  if not hasattr(source, "labelled_rows"):
    raise ValueError(f"job=synthesize reads the labelled subset by index, and "
                     f"{config.data.name!r} is read as a tf.data stream: prepare it as "
                     "ArrayRecord (file_format='array_record') or use in-memory data.")
  teacher = kinds.teacher_for(config, cfg, workdir, source, sharding.make_mesh())
  labelled = source.labelled
  recorded = cache.recorded_settings(config, teacher.identity, len(labelled))
  with artifacts.writing(directory, "synthetic cache", config_key="tgt_cache.dir"):
    _check_maker(directory, recorded, samples)
    _write(config, cfg, teacher, labelled, directory, samples, recorded)
  results = {"job": "synthesize", "method": config.method, "cache_dir": directory,
             "num_examples": len(labelled), "samples_per_example": samples,
             "num_records": len(labelled) * samples, "seed": config.seed,
             "wall_time_sec": time.time() - start}
  return artifacts.write_results(workdir, results)


def _check_maker(directory, recorded, samples):
  """The cache's identity, recorded before its first record: a rerun with other settings (σ,
  seed, subset, N, a retrained teacher) would keep the old shards under a new manifest."""
  identity = {**recorded, "samples_per_example": samples}
  manifest = epath.Path(directory) / synthetic_cache.MANIFEST
  if manifest.exists() and not (epath.Path(directory) / IDENTITY_FILE).exists():
    old = synthetic_cache.read_manifest(directory)      # a cache made before identities
    artifacts.check_identity({**old["settings"], "samples_per_example":
                              old["samples_per_example"]}, identity, "synthetic cache",
                             directory, _FIX)
  artifacts.record_identity(directory, identity, "synthetic cache", _FIX, file=IDENTITY_FILE)


_FIX = ("a cache is never rewritten under other settings; rerun with the settings it was made "
        "with, or give this run another tgt_cache.dir")


def _write(config, cfg, teacher, labelled, directory, samples, recorded):
  mesh = sharding.make_mesh(jax.local_devices())   # each process explores its own examples
  params = sharding.replicate(mesh, jax.tree.map(
      lambda a: np.asarray(a.addressable_data(0)), teacher.params))
  index, processes = jax.process_index(), jax.process_count()
  first, count = synthetic_cache.example_range(len(labelled), index, processes)
  if synthetic_cache.shard_done(directory, index, processes):
    logging.info("Cache shard %d of %d in %s is complete: kept.", index, processes, directory)
  else:
    fn = make_synthesize(cfg, teacher.functions, samples, mesh)
    written = synthetic_cache.write_shard(
        directory, index, processes, first, samples,
        _chunks(fn, params, _examples_of(labelled), first, count, config.seed, mesh))
    logging.info("Cache shard %d of %d: %d records in %s.", index, processes, written, directory)
  if processes > 1:
    multihost_utils.sync_global_devices("synthetic cache shards written")
  if index == 0:
    synthetic_cache.write_manifest(directory, processes, samples, recorded)
  if processes > 1:
    multihost_utils.sync_global_devices("synthetic cache manifest written")
