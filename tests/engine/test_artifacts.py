"""engine/artifacts.py: the artifact rule's pieces (checksums, identities, one writer) and
parameter directories that record their checksums and fail to write in one line."""

import json
import os

import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from tgt_jax import checkpointing, workdir as workdir_lib
from tgt_jax.engine import artifacts

PARAMS = {"dense": {"kernel": jnp.arange(6.0).reshape(2, 3), "bias": jnp.ones(3)}}


def test_params_record_every_file_and_a_flipped_byte_is_named(tmp_path):
  artifacts.save_params_then_json(tmp_path, PARAMS, "part.json", {"model": "m"})
  meta = json.loads((tmp_path / "part.json").read_text())
  on_disk = {os.path.relpath(os.path.join(d, f), tmp_path) for d, _, fs in os.walk(tmp_path)
             for f in fs} - {"part.json"}
  assert set(meta[artifacts.CHECKSUMS]) == on_disk and meta["model"] == "m"
  restored = artifacts.restore_replicated(tmp_path / "params", lambda: PARAMS, None,
                                          None, checksums=meta[artifacts.CHECKSUMS])
  np.testing.assert_array_equal(restored["dense"]["kernel"], PARAMS["dense"]["kernel"])
  name = max(meta[artifacts.CHECKSUMS], key=lambda n: os.path.getsize(tmp_path / n))
  raw = bytearray((tmp_path / name).read_bytes())
  raw[-1] ^= 1
  (tmp_path / name).write_bytes(bytes(raw))
  with pytest.raises(checkpointing.DamagedArtifact,
                     match=rf"^{tmp_path / name} changed since it was written .* part at"):
    artifacts.restore_replicated(tmp_path / "params", lambda: PARAMS, None, None,
                                 checksums=meta[artifacts.CHECKSUMS], what="part")


def test_a_save_on_a_full_disk_is_one_line_and_leaves_no_json(tmp_path, monkeypatch):
  def no_space(*args, **kwargs):
    raise OSError(28, "No space left on device")
  monkeypatch.setattr(ocp.StandardCheckpointer, "save", no_space)
  with pytest.raises(checkpointing.WriteFailed,
                     match=rf"^Writing {tmp_path} failed \(OSError: .*No space left on device\): "
                           r"it is left incomplete \(no part.json\)") as e:
    artifacts.save_params_then_json(tmp_path, PARAMS, "part.json", {})
  assert len(str(e.value).splitlines()) == 1 and not (tmp_path / "part.json").exists()


def test_an_identity_is_recorded_once_and_differences_are_listed(tmp_path):
  assert artifacts.record_identity(tmp_path, {"sigma": 1.0, "seed": 0}, "cache", "fix it")
  assert not artifacts.record_identity(tmp_path, {"sigma": 1.0, "seed": 0}, "cache", "fix it")
  with pytest.raises(artifacts.ArtifactMismatch,
                     match=r"The cache at .* was made with other settings \(seed: cache 0, this "
                           r"run 1; sigma: cache 1.0, this run 0.5\): fix it\.$"):
    artifacts.record_identity(tmp_path, {"sigma": 0.5, "seed": 1}, "cache", "fix it")
  (tmp_path / artifacts.IDENTITY_FILE).write_text("{")
  with pytest.raises(checkpointing.DamagedArtifact, match="identity is damaged"):
    artifacts.record_identity(tmp_path, {}, "cache", "fix it")


def test_writing_creates_the_directory_holds_its_lock_and_names_an_unwritable_one(tmp_path):
  with artifacts.writing(tmp_path / "a" / "b", "teacher", config_key="teacher.dir") as where:
    assert os.path.exists(where / workdir_lib.LOCK_FILE)
  assert not os.path.exists(tmp_path / "a" / "b" / workdir_lib.LOCK_FILE)
  (tmp_path / "f").write_text("x")
  with pytest.raises(workdir_lib.WorkdirError, match=r"^teacher.dir .*f/t' cannot be created"):
    with artifacts.writing(tmp_path / "f" / "t", "teacher", config_key="teacher.dir"):
      pass


def test_params_fingerprint_tells_values_apart():
  a = artifacts.params_fingerprint(PARAMS)
  changed = {"dense": {**PARAMS["dense"], "bias": PARAMS["dense"]["bias"].at[0].add(1e-6)}}
  assert a == artifacts.params_fingerprint(PARAMS) and a != artifacts.params_fingerprint(changed)
