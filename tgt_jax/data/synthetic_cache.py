"""Synthetic examples written once and read back by index: ArrayRecord shards, one per process.

Why ArrayRecord (the format grain reads, what MaxText uses for deterministic input):
records are read by index, so a batch is a list of record numbers computed from
(seed, step), and a resumed run reads exactly the records it would have read with no
reader state to checkpoint; many processes read one file in parallel; and it ships
with tensorflow-datasets already. TFRecord is read in order, so an exact replay would
have to checkpoint and fast-forward iterators.

A cache directory:
  shard-PPPPP-of-QQQQQ.array_record   process P's examples [first, first + count): record
                                      (e - first)·N + j holds sample j of example e
  shard-PPPPP-of-QQQQQ.json           that shard's range and the sha256 of its file: written
                                      after its records
  manifest.json                       the fields, N, the shards (with their sha256) and the
                                      settings that made the cache; written last, so its
                                      presence means complete
A record is the fields' raw bytes, concatenated in the manifest's order. A shard whose
bytes changed (bit rot, a partial copy) is named by `verify` before a student reads it,
and a record that does not read is named with its shard (CacheDamaged).
"""

import hashlib
import json

import numpy as np
from etils import epath

MANIFEST = "manifest.json"
FORMAT = "tgt_jax synthetic cache v1"


class CacheDamaged(ValueError):
  """A cache file that is missing, changed since it was written, or does not read."""


def _sha256(path):
  digest = hashlib.sha256()
  with epath.Path(path).open("rb") as f:
    for piece in iter(lambda: f.read(1 << 22), b""):
      digest.update(piece)
  return digest.hexdigest()


def shard_name(process_index, process_count):
  return f"shard-{process_index:05d}-of-{process_count:05d}"


def example_range(num_examples, process_index, process_count):
  """(first, count): process `process_index`'s contiguous share of `num_examples` examples."""
  base, extra = divmod(num_examples, process_count)
  first = process_index * base + min(process_index, extra)
  return first, base + (1 if process_index < extra else 0)


def _encode(fields, arrays, i):
  return b"".join(np.ascontiguousarray(arrays[name][i], dtype=spec["dtype"]).tobytes()
                  for name, spec in fields.items())


def _decode(fields, record):
  out, offset = {}, 0
  for name, spec in fields.items():
    count = int(np.prod(spec["shape"], dtype=np.int64))
    out[name] = np.frombuffer(record, spec["dtype"], count, offset).reshape(spec["shape"])
    offset += count * np.dtype(spec["dtype"]).itemsize
  if offset != len(record):
    raise ValueError(f"A cache record has {len(record)} bytes; its fields need {offset}.")
  return out


def fields_of(arrays):
  """{name: {shape, dtype}} of one record, from per-record arrays [n, ...], in name order: the
  order of the fields' bytes in a record (JSON with sorted keys keeps it)."""
  return {name: {"shape": list(np.shape(arrays[name])[1:]),
                 "dtype": np.asarray(arrays[name]).dtype.str} for name in sorted(arrays)}


def shard_done(directory, process_index, process_count):
  return (epath.Path(directory) / f"{shard_name(process_index, process_count)}.json").exists()


def write_shard(directory, process_index, process_count, first, samples, chunks):
  """Writes this process's shard from `chunks`: dicts of arrays [n·samples, ...] in record order.

  The shard's JSON goes last: a shard without it is incomplete and is rewritten.
  Returns the number of records written.
  """
  from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top
  directory = epath.Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  name = shard_name(process_index, process_count)
  writer = array_record_module.ArrayRecordWriter(str(directory / f"{name}.array_record"),
                                                 "group_size:1")
  fields, count = None, 0
  try:
    for chunk in chunks:
      fields = fields or fields_of(chunk)
      for i in range(len(next(iter(chunk.values())))):
        writer.write(_encode(fields, chunk, i))
        count += 1
  finally:
    writer.close()
  if count % samples:
    raise ValueError(f"Shard {name}: {count} records is not a whole number of examples of "
                     f"{samples} samples.")
  (directory / f"{name}.json").write_text(json.dumps(
      {"file": f"{name}.array_record", "first_example": first, "num_examples": count // samples,
       "fields": fields, "sha256": _sha256(directory / f"{name}.array_record")}))
  return count


def write_manifest(directory, process_count, samples, settings):
  """manifest.json from the shards' JSONs (call once every shard is written)."""
  directory = epath.Path(directory)
  shards = [json.loads((directory / f"{shard_name(p, process_count)}.json").read_text())
            for p in range(process_count)]
  fields = next((s["fields"] for s in shards if s["fields"]), None)
  manifest = {"format": FORMAT, "samples_per_example": samples,
              "num_examples": sum(s["num_examples"] for s in shards), "fields": fields,
              "shards": [{k: s[k] for k in ("file", "first_example", "num_examples", "sha256")}
                         for s in shards],
              "settings": settings}
  (directory / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
  return manifest


def read_manifest(directory):
  path = epath.Path(directory) / MANIFEST
  if not path.exists():
    raise FileNotFoundError(f"No synthetic cache at {str(directory)!r} (no {MANIFEST}): make one "
                            "with job=synthesize, or it is still being written.")
  try:
    manifest = json.loads(path.read_text())
  except json.JSONDecodeError as e:
    raise ValueError(f"{str(path)!r} is not valid JSON: {e}") from None
  if manifest.get("format") != FORMAT:
    raise ValueError(f"{str(path)!r} is not a {FORMAT!r} manifest.")
  return manifest


def verify(directory, manifest):
  """CacheDamaged naming the first shard file that is missing or whose sha256 differs from the
  one recorded when it was written (caches made before shards had one are not checked)."""
  for shard in manifest["shards"]:
    path = epath.Path(directory) / shard["file"]
    if not path.exists():
      raise CacheDamaged(f"{str(path)!r} is missing: the synthetic cache at {str(directory)!r} "
                         "is incomplete; make it again (job=synthesize) in another directory.")
    if shard.get("sha256") and _sha256(path) != shard["sha256"]:
      raise CacheDamaged(f"{str(path)!r} changed since it was written (its sha256 differs from "
                         f"the manifest's): the synthetic cache at {str(directory)!r} is "
                         "damaged; make it again (job=synthesize) in another directory.")


class Reader:
  """Records of a complete cache by (example, sample); shards are opened on first use."""

  def __init__(self, directory, check=True):
    self.directory = epath.Path(directory)
    self.manifest = read_manifest(directory)
    if check:
      verify(directory, self.manifest)
    self.fields = self.manifest["fields"]
    self.samples = int(self.manifest["samples_per_example"])
    self.num_examples = int(self.manifest["num_examples"])
    self._firsts = np.asarray([s["first_example"] for s in self.manifest["shards"]])
    self._readers = {}

  def _reader(self, shard):
    if shard not in self._readers:
      from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top
      self._readers[shard] = array_record_module.ArrayRecordReader(
          str(self.directory / self.manifest["shards"][shard]["file"]))
    return self._readers[shard]

  def read(self, examples, samples):
    """{field: [n, ...]} for the pairs (examples[i], samples[i]), in that order."""
    examples, samples = np.asarray(examples, np.int64), np.asarray(samples, np.int64)
    if np.any((examples < 0) | (examples >= self.num_examples)):
      raise IndexError(f"Example ids outside the cache's {self.num_examples}.")
    if np.any((samples < 0) | (samples >= self.samples)):
      raise IndexError(f"Sample ids outside the cache's {self.samples} per example.")
    shards = np.searchsorted(self._firsts, examples, side="right") - 1
    records = [None] * len(examples)
    for shard in np.unique(shards):
      where = np.flatnonzero(shards == shard)
      local = (examples[where] - self._firsts[shard]) * self.samples + samples[where]
      file = self.directory / self.manifest["shards"][int(shard)]["file"]
      try:
        got = self._reader(int(shard)).read([int(r) for r in local])
        for i, record in zip(where, got):
          records[i] = _decode(self.fields, record)
      except (RuntimeError, ValueError, OSError) as e:   # Riegeli reports damage as these
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise CacheDamaged(f"{str(file)!r} does not read ({type(e).__name__}: {first}): the "
                           "synthetic cache is damaged; make it again (job=synthesize).") from None
    return {name: np.stack([r[name] for r in records]) for name in self.fields}

  def close(self):
    for reader in self._readers.values():
      reader.close()
    self._readers = {}


CACHE_STREAM = 7_919     # the sample picks' own random stream (any fixed number)


def sample_ids(seed, step, global_batch, num_samples, available):
  """[global_batch, num_samples] cached sample ids for the rows of batch `step`: a function of
  (seed, step) only, distinct within a row while num_samples <= available."""
  rng = np.random.default_rng([seed, step, CACHE_STREAM])
  start = rng.integers(0, available, size=(global_batch, 1))
  return (start + np.arange(num_samples)[None]) % available


def synthetic_batch(reader, example_ids, sample_ids_):
  """{field: [rows · m, ...]}: sample_ids_[i, k] of example_ids[i], rows in order, each row's m
  samples together (the order online exploration makes x' in)."""
  examples = np.repeat(np.asarray(example_ids), sample_ids_.shape[1])
  return reader.read(examples, sample_ids_.reshape(-1))
