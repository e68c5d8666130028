"""teachers/diffusion.py: a DiT + AutoencoderKL + BiT teacher on the tiny published-format
fixtures (configs/imagenet.py:runlocal,teacher=dit), and its σ ↔ SDEdit timestep mapping.
(Named test_teachers_diffusion: tests/models/test_diffusion.py tests the sampler, and pytest
needs distinct basenames; tests/test_repository_layout.py.)"""

import math
import os
import re
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tgt_jax import configlib, jobs, tgt
from tgt_jax.models import autoencoder_kl, diffusion, dit
from tgt_jax.teachers import diffusion as diffusion_teacher
from tgt_jax.teachers import kinds

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "configs")
IMAGE_SHAPE, PIXEL_RANGE = (32, 32, 3), (-1.0, 1.0)   # runlocal's student; the DiT works at 16 px


def _config(arg="runlocal,teacher=dit", **overrides):
  return configlib.load(os.path.join(CONFIGS, "imagenet.py"), arg, **overrides)


def _source(num_classes=1000):
  return types.SimpleNamespace(image_shape=IMAGE_SHAPE, pixel_range=PIXEL_RANGE,
                               num_classes=num_classes)


@pytest.fixture(scope="module")
def teacher():
  """float32 (runlocal's teacher computes in bfloat16), to compare against the parts' own."""
  return diffusion_teacher.load(_config(**{"teacher.dtype": "float32"}), None, _source(), None,
                                ("generator", "labeler"), False)


# -- σ ↔ t -------------------------------------------------------------------------------------


def test_sigma_starts_sdedit_at_the_ddim_timestep_of_nearest_noise():
  schedule = diffusion.Schedule()                 # DiT-XL-2-256's (the fixture's scheduler too)
  alphas = schedule.alphas_cumprod().astype(np.float64)
  grid = schedule.timesteps(25)
  np.testing.assert_allclose(diffusion_teacher.noise_level(schedule, grid),
                             np.sqrt((1 - alphas[grid]) / alphas[grid]))
  for sigma in (0.05, 0.1, 0.5, 1.0, 3.0, 500.0):
    steps = diffusion_teacher.timesteps_for_sigma(schedule, 25, sigma)
    distance = np.abs(np.log(np.sqrt((1 - alphas[grid]) / alphas[grid]) / sigma))
    assert steps[0] == grid[np.argmin(distance)], sigma
    np.testing.assert_array_equal(steps, grid[len(grid) - len(steps):])   # a tail, down to 0
  np.testing.assert_array_equal(diffusion_teacher.timesteps_for_sigma(schedule, 25, math.inf),
                                grid)
  np.testing.assert_array_equal(diffusion_teacher.timesteps_for_sigma(schedule, 25, 0.0), [0])
  # The kind's docstring table is the schedule's.
  doc = {float(s): (int(t), float(n), int(k)) for s, t, n, k in re.findall(
      r"^\s+(\d+\.\d+)\s+(\d+)\s+(\d+\.\d+)\s+(\d+)$", diffusion_teacher.__doc__, re.M)}
  table = diffusion_teacher.sigma_table(schedule, 25)
  assert len(doc) == len(table) - 1
  for sigma, t, noise, steps in table[:-1]:
    assert doc[sigma][::2] == (t, steps) and abs(doc[sigma][1] - noise) < 5e-4, sigma
  assert table[-1][1:4:2] == (960, 25)


# -- the teacher -------------------------------------------------------------------------------


def test_sdedit_is_tgt_random_deterministic_in_the_key_in_the_datas_shape_and_range(teacher):
  params, fns = teacher.params, teacher.functions
  x = jax.random.uniform(jax.random.key(0), (4, *IMAGE_SHAPE), minval=-1.0, maxval=1.0)
  y = jnp.array([3, 999, 0, 512])
  cfg = tgt.TGTConfig(method="tgt_random", sigma=0.5, num_samples=2)
  synthesize = jax.jit(lambda p, key: tgt.synthesize(key, cfg, fns, p, None, None, x, labels=y))
  first, again, other = (synthesize(params, jax.random.key(k)) for k in (1, 1, 2))
  assert first.shape == (8, *IMAGE_SHAPE) and np.isfinite(first).all()
  assert first.min() >= -1.0 and first.max() <= 1.0
  np.testing.assert_array_equal(first, again)
  assert not np.allclose(first, other)


@pytest.mark.slow      # 30 s on 2 shared cores (four compilations); the e2e test runs the kind
def test_g_of_the_sigma_ball_is_sdedit_and_the_prior_runs_the_whole_chain(teacher):
  params, fns = teacher.params, teacher.functions
  # 8 rows: one per device, so G runs under shard_map (the reference below does not).
  x = jax.random.uniform(jax.random.key(0), (8, *IMAGE_SHAPE), minval=-1.0, maxval=1.0)
  y = jnp.array([3, 999, 0, 512, 7, 7, 100, 1])
  # G(E(x) + σ_t·ε) is SDEdit's own x_t = √ᾱ_t·z + √(1−ᾱ_t)·ε denoised from t, then decoded.
  schedule = diffusion.load_schedule(_config().teacher.scheduler_dir)
  steps = schedule.timesteps(4)[1:]                       # runlocal: 4 DDIM steps
  sigma = float(diffusion_teacher.noise_level(schedule, steps[0]))
  z = jax.jit(fns.encode)(params, x)
  eps = jax.random.normal(jax.random.key(3), z.shape)
  ours = jax.jit(lambda p, z_: fns.decode_conditional(p, z_, y, sigma))(params, z + sigma * eps)
  config, module, variables = dit.load(_config().teacher.transformer_dir)
  x_t = diffusion.add_noise(schedule, z.reshape(8, 8, 8, 4), eps.reshape(8, 8, 8, 4), steps[0])
  _, vae, vae_variables = autoencoder_kl.load(_config().teacher.vae_dir)

  @jax.jit
  def reference(x_t):
    x0 = diffusion.denoise(dit.noise_fn(module, variables), x_t, y, steps, 4, 1.5,
                           null_class=config.null_class, schedule=schedule)
    decoded = jnp.clip(vae.apply(vae_variables, x0, method=vae.decode_latent), -1.0, 1.0)
    return jax.image.resize(decoded, (8, *IMAGE_SHAPE), "bilinear", antialias=True)

  want = reference(x_t)
  np.testing.assert_allclose(ours, want, atol=2e-4)
  prior = tgt.TGTConfig(method="tgt_prior", num_samples=2)
  got = jax.jit(lambda p, key: tgt.synthesize(key, prior, fns, p, None, None, x[:4]))(
      params, jax.random.key(5))
  assert got.shape == (8, *IMAGE_SHAPE) and -1.0 <= got.min() and got.max() <= 1.0


def test_tgt_prior_draws_the_classes_uniformly(teacher):
  fns = teacher.functions
  assert fns.num_classes == 1000 and not fns.condition_on_labeler
  cfg = tgt.TGTConfig(method="tgt_prior", num_samples=2)
  classes = tgt.conditioning_labels(jax.random.key(6), cfg, fns, teacher.params,
                                    jnp.zeros((5000, 1)), None)
  counts = np.bincount(np.asarray(classes), minlength=1000)
  assert len(counts) == 1000 and counts.sum() == 10_000 and counts.max() < 30   # ≈ 10 each


def test_identity_names_every_published_file_and_part(teacher):
  t = _config().teacher
  files = [os.path.join(t.transformer_dir, n) for n in (dit.CONFIG_FILE, dit.WEIGHTS_FILE)]
  files += [os.path.join(t.vae_dir, n) for n in ("config.json",
                                                 "diffusion_pytorch_model.safetensors")]
  files += [os.path.join(t.scheduler_dir, diffusion.SCHEDULER_FILE), t.labeler_file]
  assert sorted(k for k in teacher.identity if k.startswith("teacher_params.")) == [
      "teacher_params.diffusion", "teacher_params.generator", "teacher_params.labeler"]
  assert sorted(k[len("sha256 of "):] for k in teacher.identity
                if k.startswith("sha256 of ")) == sorted(files)
  assert teacher.meta["native_resolution"] == 16 and teacher.directory == t.transformer_dir
  assert teacher.meta["sdedit_start_timestep_at_sigma"] == 250      # σ = 0.5, 4 steps: 750…0
  alone = diffusion_teacher.load(_config(), None, _source(), None, ("labeler",), False)
  assert sorted(alone.identity) == ["sha256 of " + t.labeler_file, "teacher_params.labeler"]
  with pytest.raises(ValueError, match="without its autoencoder"):
    alone.functions.encode(alone.params, None)


# -- settings ------------------------------------------------------------------------------------


@pytest.mark.parametrize("key, value, match", [
    ("teacher.ddim_steps", 0, "teacher.ddim_steps=0"),
    ("teacher.ddim_steps", True, "teacher.ddim_steps=True"),
    ("teacher.guidance", -1.0, "teacher.guidance=-1.0"),
    ("teacher.guidance", float("nan"), "teacher.guidance=nan"),
    ("teacher.condition_on", "caption", "teacher.condition_on 'caption'"),
    ("teacher.labeler_file", "", "needs teacher.labeler_file"),
    ("teacher.labeler_format", "onnx", "teacher.labeler_format 'onnx'"),
    ("teacher.transformer_dir", "", "needs teacher.dit_dir.*or teacher.transformer_dir"),
    ("method", "tgt_gradient", "method 'tgt_gradient'.*differentiate through the DDIM chain"),
])
def test_every_bad_setting_is_named(key, value, match):
  config = _config()
  config.update_from_flattened_dict({key: value})
  with pytest.raises(ValueError, match=match):
    jobs.validate(config)


def test_dit_dir_alone_names_its_three_sub_directories():
  config = _config("teacher=dit", **{"teacher.dit_dir": "gs://B/dit"})
  jobs.validate(config)
  assert diffusion_teacher.directories(config.teacher) == {
      "transformer_dir": "gs://B/dit/transformer", "vae_dir": "gs://B/dit/vae",
      "scheduler_dir": "gs://B/dit/scheduler"}
  assert kinds.kind_of(config).where(config, None) == "gs://B/dit/transformer"


def test_a_dit_that_does_not_fit_the_data_or_schedule_is_named():
  ten = os.path.join(os.path.dirname(_config().teacher.scheduler_dir), "dit")   # 10 classes
  with pytest.raises(ValueError, match="DiT in .*dit' knows 10 classes; the data has 1000"):
    diffusion_teacher.load(_config(**{"teacher.transformer_dir": ten}), None, _source(), None,
                           ("generator", "labeler"), False)
  config = _config(**{"teacher.ddim_steps": 1001})
  with pytest.raises(ValueError, match="teacher.ddim_steps=1001: the schedule .* 1000 steps"):
    diffusion_teacher.load(config, None, _source(), None, ("generator", "labeler"), False)
