"""teachers/pretrained.py: a published AutoencoderKL and labeler as one TGT teacher, on the
tiny fixtures the model tests check against diffusers, BiT's code and timm."""

import os

import jax
import ml_collections
import numpy as np
import pytest

from tgt_jax import models, tgt
from tgt_jax.models import autoencoder_kl
from tgt_jax.teachers import pretrained

from conftest import FAST_COMPILE

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "pretrained")
VAE = os.path.join(FIXTURES, "autoencoder_kl")
BIT = os.path.join(FIXTURES, "bit", "tiny_bit.npz")
TIMM = os.path.join(FIXTURES, "timm_resnet", "basic.safetensors")
TIMM_ARCH = dict(stage_sizes=(2, 1, 1, 1), channels=(4, 8, 16, 32), bottleneck=False)
RESNET26 = os.path.join(FIXTURES, "timm_resnet26")       # model.safetensors beside config.json
IMAGE_SHAPE, PIXEL_RANGE = (16, 16, 3), (0.0, 1.0)   # the student's images, not the parts'


@pytest.fixture(scope="module")
def teacher():
  return pretrained.load(VAE, "bit", BIT, IMAGE_SHAPE, PIXEL_RANGE, num_classes=10, groups=4)


@pytest.fixture(scope="module")
def images():
  return jax.random.uniform(jax.random.key(0), (4, *IMAGE_SHAPE))


def test_latents_are_flat_and_decode_to_the_students_images(teacher, images):
  meta, params, fns = teacher
  assert meta["latent_shape"] == [8, 8, 4] and fns.latent_dim == 256    # 16 px / 2, 4 channels
  z = jax.jit(fns.encode)(params, images)
  assert z.shape == (4, 256)
  x = np.asarray(jax.jit(fns.decode)(params, z))
  assert x.shape == (4, *IMAGE_SHAPE) and x.min() >= 0.0 and x.max() <= 1.0


def test_e_then_g_is_the_autoencoders_own_reconstruction_in_the_datas_range(teacher, images):
  _, params, fns = teacher
  _, vae, variables = autoencoder_kl.load(VAE)
  own = jax.jit(vae.apply)(variables, 2.0 * images - 1.0)          # [-1, 1] in and out
  ours = jax.jit(lambda p, x: fns.decode(p, fns.encode(p, x)))(params, images)
  np.testing.assert_allclose(ours, (np.clip(own, -1.0, 1.0) + 1.0) / 2.0, atol=1e-5)


def test_the_labeler_sees_its_own_range_and_resolution(teacher, images):
  _, params, fns = teacher
  labeler, variables = pretrained.load_labeler("bit", BIT, num_classes=10, groups=4)
  want = jax.jit(labeler.apply)(variables, jax.image.resize(
      2.0 * images - 1.0, (4, 224, 224, 3), "bilinear", antialias=True))
  np.testing.assert_allclose(jax.jit(fns.label)(params, images), want, rtol=1e-4, atol=1e-4)


def test_timm_labeler_and_a_tgt_gradient_step_through_the_published_parts(images):
  meta, params, fns = pretrained.load(VAE, "timm", TIMM, IMAGE_SHAPE, PIXEL_RANGE,
                                      arch=TIMM_ARCH)
  assert meta["num_classes"] == 10
  student = models.classifier("mlp", 10)
  student_params = jax.jit(student.init)(jax.random.key(1), images)
  cfg = tgt.TGTConfig(method="tgt_gradient", eta=0.5, steps=1)
  synthesize = jax.jit(tgt.synthesize, static_argnums=(1, 2, 4),   # compiling: most of its time
                       compiler_options=FAST_COMPILE)
  x_syn = np.asarray(synthesize(jax.random.key(2), cfg, fns, params, student.apply,
                                student_params, images))
  assert x_syn.shape == images.shape and np.all(np.isfinite(x_syn))
  assert 0.0 <= x_syn.min() and x_syn.max() <= 1.0


@pytest.mark.parametrize("shape,match", [
    ((16, 16, 1), "3-channel images; the data has 1 channels"),
    ((15, 16, 3), "multiples of 2"),
])
def test_images_the_autoencoder_cannot_read_are_named(shape, match):
  with pytest.raises(ValueError, match=match):
    pretrained.load(VAE, "bit", BIT, shape, PIXEL_RANGE, groups=4)


def test_unknown_labeler_format_and_timm_without_arch():
  with pytest.raises(ValueError, match=r"Unknown labeler format 'onnx'.*'bit', 'timm'"):
    pretrained.load_labeler("onnx", BIT)
  with pytest.raises(ValueError, match="needs its architecture"):
    pretrained.load_labeler("timm", TIMM)


def test_a_labeler_only_teacher_reads_no_autoencoder_and_refuses_e_and_g(images):
  meta, params, fns = pretrained.load("no/such/vae", "bit", BIT, IMAGE_SHAPE, PIXEL_RANGE,
                                      groups=4, parts=("labeler",))
  assert sorted(params) == ["labeler"] and meta["parts"] == ["labeler"] and fns.latent_dim == 0
  assert jax.jit(fns.label)(params, images).shape == (4, 10)
  with pytest.raises(ValueError, match="without its autoencoder"):
    fns.encode(params, images)


def test_labeler_resolution_replaces_the_published_one(images):
  meta, params, fns = pretrained.load(VAE, "bit", BIT, IMAGE_SHAPE, PIXEL_RANGE, groups=4,
                                      parts=("labeler",), labeler_resolution=32)
  assert meta["labeler_resolution"] == 32
  labeler, variables = pretrained.load_labeler("bit", BIT, num_classes=10, groups=4)
  want = jax.jit(labeler.apply)(variables, jax.image.resize(
      2.0 * images - 1.0, (4, 32, 32, 3), "bilinear", antialias=True))
  np.testing.assert_allclose(jax.jit(fns.label)(params, images), want, rtol=1e-4, atol=1e-4)


def test_a_timm_labeler_is_fed_as_its_config_json_says():
  """timm's logits (timm normalising with the config's mean and std) from the student's pixels
  in the data's own range (0..255 here), at the config's 40 px; the meta says so."""
  with np.load(os.path.join(RESNET26, "reference.npz")) as f:
    x01, logits = f["x01"], f["logits"]
  weights = os.path.join(RESNET26, "model.safetensors")
  meta, params, fns = pretrained.load("no/such/vae", "timm", weights, (40, 40, 3), (0.0, 255.0),
                                      parts=("labeler",))
  config = str(os.path.join(RESNET26, "config.json"))
  assert meta["labeler_input"] == {
      "resolution": 40, "mean": [0.3, 0.6, 0.2], "std": [0.15, 0.35, 0.25],
      "value_range": [-1.0, 1.0], "published_interpolation": "bilinear",
      "published_crop_pct": 0.9, "from": dict.fromkeys(("resolution", "mean", "std"), config)}
  np.testing.assert_allclose(jax.jit(fns.label)(params, 255.0 * x01), logits, rtol=0, atol=1e-4)
  meta = pretrained.load("no/such/vae", "timm", weights, (40, 40, 3), (0.0, 255.0),
                         parts=("labeler",), arch="resnet26", labeler_resolution=64)[0]
  assert meta["labeler_resolution"] == meta["labeler_input"]["resolution"] == 64
  assert meta["labeler_input"]["from"] == dict(resolution="teacher.labeler_resolution",
                                               mean=config, std=config)


def test_labeler_input_of_bit_and_of_timm_without_a_config():
  labeler = pretrained.load_labeler("bit", BIT, num_classes=10, groups=4)[0]
  info = pretrained.labeler_input("bit", BIT, labeler)
  assert (info["resolution"], info["mean"], info["from"]["std"]) == (
      224, [0.5, 0.5, 0.5], "BiT's published input")
  labeler = pretrained.load_labeler("timm", TIMM, TIMM_ARCH)[0]
  assert "no config.json" in pretrained.labeler_input("timm", TIMM, labeler)["from"]["mean"]


def test_validate_options_names_a_bad_labeler_arch():
  config = ml_collections.ConfigDict(dict(labeler_format="timm", labeler_arch="resnet50d"))
  with pytest.raises(ValueError, match=r"teacher.labeler_arch='resnet50d': timm's 'resnet50d' "
                                       "has a deep stem"):
    pretrained.validate_options(config)
  for arch in ("resnet200", "resnet:basic:1,1,1,1", ""):
    config.labeler_arch = arch
    pretrained.validate_options(config)
  pretrained.validate_options(ml_collections.ConfigDict(dict(labeler_format="bit",
                                                             labeler_arch="anything")))
