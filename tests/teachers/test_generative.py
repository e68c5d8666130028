"""teachers/generative.py: save/load round trip and the shape checks."""

import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tgt_jax.teachers import generative


def test_round_trip_and_functions(tiny_teacher_dir):
  meta, params = generative.load(tiny_teacher_dir, (8, 8, 1), 10)
  fns = generative.as_functions(meta)
  x = np.random.default_rng(0).uniform(size=(4, 8, 8, 1)).astype(np.float32)
  z = fns.encode(params, x)
  assert z.shape == (4, meta["latent_dim"])
  x_rec = fns.decode(params, z)
  assert x_rec.shape == x.shape and 0.0 <= float(x_rec.min()) and float(x_rec.max()) <= 1.0
  assert fns.label(params, x).shape == (4, 10)


def test_a_bfloat16_teacher_computes_in_bfloat16_from_the_same_params(tiny_teacher_dir):
  """teacher.dtype: the trained float32 parameters, bf16 compute, float32 outputs close to f32's."""
  meta, params = generative.load(tiny_teacher_dir, (8, 8, 1), 10)
  full, half = generative.as_functions(meta), generative.as_functions(meta, jnp.bfloat16)
  x = np.random.default_rng(0).uniform(size=(4, 8, 8, 1)).astype(np.float32)
  hlo = jax.jit(half.label).lower(params, x).as_text()
  assert "bf16" in hlo and "bf16" not in jax.jit(full.label).lower(params, x).as_text()
  for fn, arg in ((lambda f: f.label, x), (lambda f: f.encode, x),
                  (lambda f: f.decode, full.encode(params, x))):
    want, got = fn(full)(params, arg), fn(half)(params, arg)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, want, atol=0.05 * float(np.abs(want).max()) + 1e-3)


@pytest.mark.parametrize("kwargs,match", [
    (dict(image_shape=(28, 28, 1), num_classes=10), r"image shape \(28, 28, 1\), the teacher has \(8, 8, 1\)"),
    (dict(image_shape=(8, 8, 1), num_classes=100), "number of classes 100, the teacher has 10"),
    (dict(image_shape=(8, 8, 1), num_classes=10, latent_dim=120), "latent size 120, the teacher has 16"),
])
def test_misfit_names_expected_and_found(tiny_teacher_dir, kwargs, match):
  with pytest.raises(ValueError, match=match):
    generative.load(tiny_teacher_dir, **kwargs)


def test_params_from_another_model_are_refused(tmp_path, tiny_teacher_dir):
  """teacher.json says one labeler, the saved parameters belong to another."""
  directory = tmp_path / "lying_teacher"
  shutil.copytree(tiny_teacher_dir, directory)
  meta = json.loads((directory / "teacher.json").read_text())
  meta["labeler"] = "mlp"
  (directory / "teacher.json").write_text(json.dumps(meta))
  with pytest.raises(ValueError, match=r"do not match the models named in teacher.json .*"
                                       r"parameter \['labeler'\]\['params'\]\[.*expected shape "
                                       r".*, found "):
    generative.load(str(directory), (8, 8, 1), 10)


def test_missing_directory_is_named(tmp_path):
  with pytest.raises(FileNotFoundError, match="No teacher at"):
    generative.load(str(tmp_path / "absent"), (8, 8, 1), 10)


def test_teacher_saved_on_eight_devices_loads_on_one(tiny_teacher_dir):
  from tgt_jax import sharding  # pylint: disable=g-import-not-at-top
  one = sharding.make_mesh(jax.devices()[:1])
  _, params = generative.load(tiny_teacher_dir, (8, 8, 1), 10, mesh=one)
  leaf = jax.tree.leaves(params)[0]
  assert leaf.sharding.mesh.devices.size == 1


def test_saved_values_come_back(tmp_path, tiny_teacher_dir):
  meta = generative.read_meta(tiny_teacher_dir)
  params = generative.init_params(meta, jax.random.key(7))
  generative.save(tmp_path / "t", meta, params)
  _, restored = generative.load(str(tmp_path / "t"), (8, 8, 1), 10)
  assert jax.tree.structure(restored) == jax.tree.structure(params)
  for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _copy(tmp_path, tiny_teacher_dir):
  directory = tmp_path / "damaged"
  shutil.copytree(tiny_teacher_dir, directory)
  return directory


@pytest.mark.parametrize("text,cause", [("{\"generator\": ", r"not valid JSON \(JSONDecodeError: "),
                                        ("[1, 2]", "holds a JSON list, not an object")])
def test_damaged_json_names_the_file(tmp_path, tiny_teacher_dir, text, cause):
  directory = _copy(tmp_path, tiny_teacher_dir)
  (directory / "teacher.json").write_text(text)
  with pytest.raises(generative.DamagedArtifact, match=rf"{directory}/teacher.json .*{cause}"):
    generative.load(str(directory), (8, 8, 1), 10)


def _without_checksums(directory):
  """A teacher as made before checksums were recorded: damage is found by reading, not hashing."""
  meta = json.loads((directory / "teacher.json").read_text())
  del meta["checksums"]
  (directory / "teacher.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("damage", ["flip", "truncate", "remove"])
def test_a_changed_params_file_is_named_before_restoring(tmp_path, tiny_teacher_dir, damage):
  directory = _copy(tmp_path, tiny_teacher_dir)
  data = sorted(p for p in (directory / "params").glob("**/*") if p.is_file()
                and p.parent.name == "d")[0]
  if damage == "flip":
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 1
    data.write_bytes(bytes(raw))
  elif damage == "truncate":
    data.write_bytes(data.read_bytes()[:10])
  else:
    data.unlink()
  said = "is missing" if damage == "remove" else "changed since it was written"
  with pytest.raises(generative.DamagedArtifact, match=rf"^{data} {said}.*teacher at {directory}"):
    generative.load(str(directory), (8, 8, 1), 10)


@pytest.mark.parametrize("damage", ["truncate", "remove_data"])
def test_params_that_do_not_read_name_the_path_in_a_few_lines(tmp_path, tiny_teacher_dir, damage):
  directory = _copy(tmp_path, tiny_teacher_dir)
  _without_checksums(directory)
  params = directory / "params"
  if damage == "truncate":
    for dirpath, _, files in os.walk(params):
      for name in files:
        with open(os.path.join(dirpath, name), "r+b") as f:
          f.truncate(os.path.getsize(os.path.join(dirpath, name)) // 3)
  else:
    for entry in os.listdir(params):
      if entry.startswith(("d", "ocdbt")) and os.path.isdir(params / entry):
        shutil.rmtree(params / entry)
  with pytest.raises(generative.DamagedArtifact, match=rf"^{params} does not read \(\w+") as e:
    generative.load(str(directory), (8, 8, 1), 10)
  assert len(str(e.value).splitlines()) == 1 and len(str(e.value)) < 500
  assert e.value.__cause__ is None and e.value.__suppress_context__


def test_fingerprint_tells_teachers_apart(tmp_path):
  assert generative.fingerprint(tmp_path) is None
  (tmp_path / "teacher.json").write_text('{"latent_dim": 16}')
  first = generative.fingerprint(tmp_path)
  assert len(first) == 16 and generative.fingerprint(str(tmp_path)) == first
  (tmp_path / "teacher.json").write_text('{"latent_dim": 32}')
  assert generative.fingerprint(tmp_path) != first
