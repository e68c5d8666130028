"""teachers/latent_diffusion.py: a DiT trained in a trained teacher's latent, as a teacher kind.

On digits (16-d latent as a 2×2×4 grid) with the session's tiny teacher: quality is
irrelevant, what is checked is what the kind promises (training on demand, the
artifact's identity, the standardised latent, the class-conditional G)."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import digits_config
from tgt_jax import checkpointing, configlib, tgt
from tgt_jax.data import sources
from tgt_jax.engine import artifacts
from tgt_jax.models import dit
from tgt_jax.teachers import kinds, latent_diffusion


def _config(teacher_dir, diffusion_dir="", method="tgt_random", **diffusion):
  config = digits_config(f"runlocal,method={method}", **{"teacher.dir": teacher_dir})
  config.teacher.update(configlib.latent_diffusion_teacher(runlocal=True, grid=2))
  config.teacher.diffusion_dir = diffusion_dir
  config.teacher.diffusion.update(diffusion)
  return config


@pytest.mark.parametrize("change, match", [
    ({"grid": 3}, r"grid=3: the 16-d latent must split into a 3x3 grid"),
    ({"class_dropout": 1.0}, r"class_dropout=1.0: give a fraction in \[0, 1\)"),
    ({"layers": 0}, r"teacher.diffusion.layers=0: give a whole number >= 1"),
])
def test_every_bad_setting_is_named(change, match):
  with pytest.raises(ValueError, match=match):
    kinds.validate(_config("unused", **change))


def test_gradient_methods_and_missing_settings_are_refused():
  with pytest.raises(ValueError, match=r"'tgt_gradient' with teacher.kind='latent_diffusion'"):
    kinds.validate(_config("unused", method="tgt_gradient"))
  config = _config("unused")
  del config.teacher["diffusion"]
  with pytest.raises(ValueError, match=r"needs teacher.diffusion"):
    kinds.validate(config)


def test_a_fresh_dit_predicts_zero_noise_adaln_zero():
  config = dit.DiTConfig(num_attention_heads=2, attention_head_dim=8, in_channels=4,
                         out_channels=4, num_layers=1, sample_size=2, patch_size=1,
                         num_classes=10)
  module, variables = latent_diffusion.init_dit(config, seed=0)
  x = jax.random.normal(jax.random.key(1), (3, 2, 2, 4))
  eps, _ = jax.jit(module.apply)(variables, x, jnp.array([0, 500, 999]), jnp.array([0, 9, 10]))
  assert eps.shape == x.shape and float(jnp.max(jnp.abs(eps))) == 0.0


# The tests below share one DiT trained on demand (~45 s idle, mostly compiling): slow set.
# By default tests/e2e/test_fashion_mnist.py runs the kind end to end (trained on demand by
# job=synthesize, then a cached student).
@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_teacher_dir):
  """(config, loaded teacher): the DiT trained on demand by a student's load."""
  directory = str(tmp_path_factory.mktemp("latent_diffusion") / "dit")
  config = _config(tiny_teacher_dir, directory)
  source = sources.make_source(config, with_subset=False)
  with pytest.raises(FileNotFoundError, match=r"No diffusion model at .* run job=diffusion"):
    kinds.kind_of(config).load(config, "unused", source, None, ("generator", "labeler"), False)
  loaded = kinds.kind_of(config).load(config, "unused", source, None, ("generator", "labeler"),
                                      True)
  return config, source, loaded


@pytest.mark.slow
def test_it_trains_once_resumably_and_says_what_it_is(trained):
  config, _, loaded = trained
  directory = config.teacher.diffusion_dir
  meta = json.loads(open(os.path.join(directory, latent_diffusion.META_FILE)).read())
  assert meta["dit"]["sample_size"] == 2 and meta["dit"]["in_channels"] == 4
  assert meta["identity"]["teacher.diffusion.steps"] == 4
  assert 0.0 <= meta["report"]["labeler_accuracy_on_samples"] <= 1.0
  run_dir = os.path.join(directory, "training", "diffusion")
  assert os.path.exists(os.path.join(run_dir, "samples_per_class_0000004.png"))
  assert os.path.exists(os.path.join(run_dir, "metrics.jsonl"))
  assert loaded.directory == directory and loaded.meta["kind"] == "latent_diffusion"
  assert set(loaded.params) == {"generator", "labeler", "diffusion"}
  assert {"teacher_params.generator", "teacher_params.labeler", "diffusion"} <= set(
      loaded.identity)


@pytest.mark.slow
def test_the_latent_is_standardised_and_the_plain_decoder_is_the_vaes(trained,
                                                                    tiny_teacher_dir):
  config, source, loaded = trained
  meta = json.loads(open(os.path.join(config.teacher.diffusion_dir,
                                      latent_diffusion.META_FILE)).read())
  vae = kinds.KINDS[""].load(_config(tiny_teacher_dir), "unused", source, None,
                             ("generator", "labeler"), False)
  images = jnp.asarray(source.train.images[:64])
  z_vae = vae.functions.encode(vae.params, images)
  z = loaded.functions.encode(loaded.params, images)
  mean, std = np.asarray(meta["latent_mean"]), np.asarray(meta["latent_std"])
  np.testing.assert_allclose(z, (z_vae - mean) / std, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(loaded.functions.decode(loaded.params, z),
                             vae.functions.decode(vae.params, z_vae), atol=1e-5)


@pytest.mark.slow
def test_x_prime_is_class_conditional_in_range_and_deterministic_in_the_key(trained):
  _, source, loaded = trained
  fns, params = loaded.functions, loaded.params
  images = jnp.asarray(source.train.images[:8])
  labels = jnp.asarray(source.train.labels[:8])
  draw = lambda cfg: jax.jit(lambda p, key: tgt.synthesize(key, cfg, fns, p, None, None, images,
                                                           labels=labels))
  random = draw(tgt.TGTConfig(method="tgt_random", sigma=0.5))
  one, again = random(params, jax.random.key(3)), random(params, jax.random.key(3))
  assert one.shape == images.shape
  np.testing.assert_array_equal(one, again)
  low, high = source.pixel_range
  assert float(one.min()) >= low and float(one.max()) <= high
  prior = draw(tgt.TGTConfig(method="tgt_prior"))(params, jax.random.key(3))
  assert prior.shape == images.shape and not np.allclose(prior, one)


@pytest.mark.slow
def test_a_dit_serves_every_student_seed_and_other_settings_or_damage_are_refused(trained, tiny_teacher_dir,
                                                              tmp_path):
  config, source, _ = trained
  student_seed = _config(tiny_teacher_dir, config.teacher.diffusion_dir)
  student_seed.seed = 1        # a student's seed is not the teacher's: the same DiT serves it
  kinds.kind_of(student_seed).load(student_seed, "unused", source, None, ("generator", "labeler"),
                                   False)
  other = _config(tiny_teacher_dir, config.teacher.diffusion_dir, class_dropout=0.2)
  with pytest.raises(artifacts.ArtifactMismatch, match=r"teacher.diffusion.class_dropout"):
    kinds.kind_of(other).load(other, "unused", source, None, ("generator", "labeler"), False)
  damaged = tmp_path / "damaged"
  damaged.mkdir()
  (damaged / latent_diffusion.META_FILE).write_text("{not json")
  with pytest.raises(checkpointing.DamagedArtifact, match=r"diffusion.json does not read"):
    latent_diffusion.read_meta(str(damaged))
