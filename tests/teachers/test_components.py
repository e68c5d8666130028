"""A teacher from three saved parts: round trip on the mesh, shapes, errors, gradients."""

import functools
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tgt_jax import losses, models, sharding
from tgt_jax.teachers import components as tc

from conftest import FAST_COMPILE

IMAGE_SHAPE = (24, 24, 3)     # the student's; the tiny generator makes 16×16
CLASSES = 10


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
  return tc.init_random_components(tmp_path_factory.mktemp("parts"), IMAGE_SHAPE, CLASSES)


@pytest.fixture(scope="module")
def mesh():
  return sharding.make_mesh()


@pytest.fixture(scope="module")
def loaded(parts, mesh):
  return tc.load_teacher(dict(parts), IMAGE_SHAPE, CLASSES, mesh)


def _replicated_on(tree, mesh):
  return all(a.sharding.is_fully_replicated and a.sharding.mesh.devices.size == 8
             and a.sharding.mesh == mesh for a in jax.tree.leaves(tree))


def _files(directory):
  return [os.path.relpath(os.path.join(d, f), directory) for d, _, fs in os.walk(directory)
          for f in fs]


def test_component_round_trip_on_mesh(tmp_path, mesh):
  module = models.generator("bigbigan_generator_tiny", None, 120, (-1.0, 1.0))
  params = tc.random_params(jax.eval_shape(module.init, jax.random.key(3), jnp.zeros((1, 120))))
  meta = tc.save_component(tmp_path / "g", "generator", "bigbigan_generator_tiny", params,
                           latent_dim=120)
  assert meta["resolution"] == 16 and meta["output_range"] == [-1.0, 1.0]
  found_meta = tc.read_component(tmp_path / "g", "generator")
  found = tc.restore_params(tmp_path / "g", found_meta, mesh)
  assert set(found_meta.pop("checksums")) == {f"params/{n}" for n in _files(tmp_path / "g/params")}
  assert found_meta == meta and _replicated_on(found, mesh)
  jax.tree.map(np.testing.assert_array_equal, params, found)


def test_load_teacher_replicates_all_three(loaded, mesh):
  meta, params = loaded
  assert sorted(params) == ["encoder", "generator", "labeler"] and _replicated_on(params, mesh)
  assert meta["latent_dim"] == 120 and meta["pixel_range"] == [-1.0, 1.0]
  assert meta["labeler"]["random_init"] and meta["labeler_image_size"] == [24, 24]
  assert meta["dtype"] is None


def test_optional_config_keys(parts):
  meta, _ = tc.load_teacher({**parts, "labeler_image_size": 32, "dtype": jnp.bfloat16,
                             "latent_dim": 120}, IMAGE_SHAPE, CLASSES)
  assert meta["labeler_image_size"] == [32, 32] and meta["dtype"] == "bfloat16"


def test_functions_shapes_range_and_exploration_gradient(loaded, mesh):
  meta, params = loaded
  teacher = tc.as_functions(meta)
  assert teacher.latent_dim == 120 and teacher.pixel_range == (-1.0, 1.0)
  student = models.classifier("resnet_tiny", CLASSES)
  student_params = tc.random_params(
      jax.eval_shape(student.init, jax.random.key(5), jnp.zeros((1, *IMAGE_SHAPE))), seed=5)

  def discrepancy(z, params, student_params):      # what gradient exploration ascends
    x = teacher.decode(params, z)
    return jnp.sum(losses.kl_divergence(teacher.label(params, x), student.apply(student_params, x)))

  @functools.partial(jax.jit, compiler_options=FAST_COMPILE)   # compiling is most of its time
  def run(params, student_params, x, noise):
    z = teacher.encode(params, x)                  # 24 px → 16 px → latent
    x_gen = teacher.decode(params, z + 3 * noise)  # latent → 16 px → 24 px
    grad = jax.grad(discrepancy)(z + noise, params, student_params)
    return z, x_gen, teacher.label(params, x), grad

  x = jax.random.uniform(jax.random.key(0), (4, *IMAGE_SHAPE), minval=-1, maxval=1)
  noise = jax.random.normal(jax.random.key(1), (4, 120))
  z, x_gen, logits, grad = run(params, *sharding.replicate(mesh, (student_params, x, noise)))
  assert z.shape == (4, 120) and x_gen.shape == (4, *IMAGE_SHAPE) and logits.shape == (4, CLASSES)
  assert float(x_gen.min()) >= -1 and float(x_gen.max()) <= 1
  assert all(np.all(np.isfinite(a)) for a in (z, x_gen, logits, grad))
  assert np.all(np.linalg.norm(grad, axis=-1) > 0)     # through both resizes, for every example


def _part_config(parts, **overrides):
  return {**parts, **overrides}


def test_missing_directory_names_path_and_part(parts, tmp_path):
  config = _part_config(parts, generator_dir=str(tmp_path / "nowhere"))
  with pytest.raises(FileNotFoundError, match=r"generator directory .*nowhere.* does not exist"):
    tc.load_teacher(config, IMAGE_SHAPE, CLASSES)
  with pytest.raises(ValueError, match=r"teacher.labeler_dir is not set"):
    tc.load_teacher(_part_config(parts, labeler_dir=""), IMAGE_SHAPE, CLASSES)


def test_wrong_kind_names_both(parts):
  with pytest.raises(ValueError, match=r"expected a 'generator' component, found 'labeler'"):
    tc.read_component(parts["labeler_dir"], "generator")


def test_latent_mismatch_names_both_parts(parts, tmp_path):
  module = models.encoder("bigbigan_encoder_tiny", 8)
  params = tc.random_params(jax.eval_shape(module.init, jax.random.key(0),
                                           jnp.zeros((1, 16, 16, 3))))
  tc.save_component(tmp_path / "e8", "encoder", "bigbigan_encoder_tiny", params, latent_dim=8)
  with pytest.raises(ValueError, match=r"encoder at .*e8.* latent_dim 8, generator at .* has 120"):
    tc.load_teacher(_part_config(parts, encoder_dir=str(tmp_path / "e8")), IMAGE_SHAPE, CLASSES)
  with pytest.raises(ValueError, match=r"expected latent_dim .* 64, found 120"):
    tc.load_teacher(_part_config(parts, latent_dim=64), IMAGE_SHAPE, CLASSES)


def test_class_and_channel_mismatch_name_expected_and_found(parts):
  with pytest.raises(ValueError, match=r"labeler at .* expected number of classes .* 7, found 10"):
    tc.load_teacher(parts, IMAGE_SHAPE, 7)
  with pytest.raises(ValueError, match=r"generator at .* expected image channels .* 1, found 3"):
    tc.load_teacher(parts, (24, 24, 1), CLASSES)


def test_param_shape_mismatch_names_the_parameter(parts, tmp_path):
  copy = tmp_path / "g12"
  shutil.copytree(parts["generator_dir"], copy)
  meta = json.loads((copy / tc.COMPONENT_FILE).read_text())
  (copy / tc.COMPONENT_FILE).write_text(json.dumps({**meta, "latent_dim": 12}))
  expected = (r"parameter \['params'\]\['grid'\]\['kernel'\] "
              r"expected shape \(12, 512\), found \(120, 512\)")
  with pytest.raises(ValueError, match=expected):
    tc.restore_params(copy, tc.read_component(copy, "generator"))
  params = tc.restore_params(parts["generator_dir"],
                             tc.read_component(parts["generator_dir"], "generator"))
  with pytest.raises(ValueError, match=expected):     # refused at save time too
    tc.save_component(tmp_path / "bad", "generator", "bigbigan_generator_tiny", params,
                      latent_dim=12)
