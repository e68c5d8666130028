"""DDIM, classifier-free guidance and SDEdit against diffusers' DDIMScheduler and DiTPipeline.

The references (tests/fixtures/make_dit.py) are diffusers' own: alphas_cumprod,
set_timesteps(n) for every spacing, step() outputs, and a guided 4-step run of the tiny
DiT the way DiTPipeline runs it. An oracle denoiser (the true noise of a known x₀)
checks that sampling and SDEdit land on x₀ whatever the start.
"""

import dataclasses
import functools
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import FAST_COMPILE
from tgt_jax.models import diffusion
from tgt_jax.models import dit
from tgt_jax.models import weight_files

TINY = os.path.join(os.path.dirname(__file__), "..", "fixtures", "pretrained", "dit")
STEP_CASES = {   # name → (num_steps, timestep, eta, clip_sample, set_alpha_to_one), as made
    "first": (10, 900, 0.0, False, True), "middle": (10, 400, 0.0, False, True),
    "last": (10, 0, 0.0, False, True), "eta": (50, 640, 0.7, False, True),
    "clip": (10, 900, 0.0, True, True), "no_alpha_one": (10, 0, 0.0, False, False)}


@functools.lru_cache(maxsize=None)
def _reference():
  with np.load(os.path.join(TINY, "reference.npz")) as npz:
    return {k: npz[k] for k in npz.files}


@functools.lru_cache(maxsize=None)
def _schedule():
  return diffusion.load_schedule(TINY)


@functools.lru_cache(maxsize=None)
def _dit():
  return dit.load(TINY)


def _run_fast(fn, *args):
  """fn jitted and compiled with FAST_COMPILE (compiling is most of these tests' time)."""
  return jax.jit(fn).lower(*args).compile(FAST_COMPILE)(*args)


def _close(got, want, rel=1e-5, what=""):
  """|got − want| ≤ rel · max(1, max|want|): float32 ᾱ differ by an ulp, and x₀ = x/√ᾱ scales it."""
  diff = float(np.max(np.abs(np.asarray(got) - want)))
  assert diff <= rel * max(1.0, float(np.max(np.abs(want)))), f"{what}: max abs diff {diff:.2e}"


def test_schedule_matches_diffusers():
  schedule = _schedule()
  assert schedule == diffusion.Schedule()       # the fixture mirrors DiT-XL-2-256's config
  ref = _reference()
  scaled = diffusion.Schedule(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
  for name, s in (("linear", schedule), ("scaled_linear", scaled)):
    np.testing.assert_allclose(s.alphas_cumprod(), ref[f"ddim_alphas_cumprod_{name}"],
                               rtol=1e-6, err_msg=name)
  for spacing in diffusion.SPACINGS:
    for offset in (0, 1):
      s = dataclasses.replace(schedule, timestep_spacing=spacing, steps_offset=offset)
      for n in (1, 7, 10, 50):
        np.testing.assert_array_equal(s.timesteps(n), ref[f"ddim_timesteps_{spacing}_{offset}_{n}"],
                                      err_msg=f"{spacing} offset {offset}, {n} steps")


@pytest.mark.parametrize("name", sorted(STEP_CASES))
def test_ddim_step_matches_diffusers(name):
  num_steps, t, eta, clip, alpha_one = STEP_CASES[name]
  ref = _reference()
  schedule = dataclasses.replace(_schedule(), clip_sample=clip, set_alpha_to_one=alpha_one)
  prev, x0 = diffusion.ddim_step(schedule, num_steps, ref["ddim_eps"], t, ref["ddim_sample"],
                                 eta, ref["ddim_noise"])
  _close(prev, ref[f"ddim_step_{name}_prev"], what=f"{name} prev_sample")
  _close(x0, ref[f"ddim_step_{name}_x0"], what=f"{name} pred_original_sample")


def test_guided_sample_matches_dit_pipeline():
  """4 DDIM steps at guidance 4 with the tiny DiT: DiTPipeline's loop without the decode."""
  _, module, variables = _dit()
  ref = _reference()
  run = jax.jit(lambda v, x, y: diffusion.sample(
      dit.noise_fn(module, v), x, y, int(ref["sample_steps"]), float(ref["sample_guidance"]),
      null_class=module.config.null_class, schedule=_schedule()))
  args = (variables, ref["sample_x_t"], ref["sample_labels"])
  compiled = run.lower(*args).compile(FAST_COMPILE)
  out = compiled(*args)
  _close(out, ref["sample_out"], what="guided sample")
  assert out.shape == ref["sample_x_t"].shape and np.all(np.isfinite(out))
  again = compiled(*args)
  np.testing.assert_array_equal(again, out)                       # deterministic (η = 0)


def test_guidance_combines_noise_in_one_doubled_call():
  calls = []

  def noise_fn(x, t, labels):
    calls.append(x.shape[0])
    return jnp.broadcast_to(labels.astype(jnp.float32)[:, None, None, None], x.shape) + t[0]

  x, labels = jnp.zeros((3, 2, 2, 1)), jnp.array([1, 2, 3])
  eps = diffusion.guided_noise(noise_fn, x, 5, labels, 3.0, null_class=7)
  assert calls == [6]
  np.testing.assert_allclose(eps[:, 0, 0, 0], 5 + 7 + 3.0 * (np.array([1, 2, 3]) - 7))
  eps = diffusion.guided_noise(noise_fn, x, 5, labels, 1.0, null_class=7)
  assert calls == [6, 3]                                          # no guidance: one plain call
  np.testing.assert_allclose(eps[:, 0, 0, 0], 5 + np.array([1, 2, 3]))


def _oracle(x0):
  """The exact noise of x_t around a known x₀: DDIM with it must return x₀."""
  alphas = jnp.asarray(_schedule().alphas_cumprod())

  def noise_fn(x, t, labels):
    del labels
    alpha = alphas[t][:, None, None, None]
    return (x - jnp.sqrt(alpha) * x0) / jnp.sqrt(1 - alpha)

  return noise_fn


def test_exact_noise_leads_sample_and_sdedit_to_the_example():
  """From pure noise (7 steps) and from SDEdit at strength 0.3 with η = 1 (20 steps)."""
  x0 = jax.random.normal(jax.random.key(0), (2, 4, 4, 3))
  labels = jnp.array([0, 1])

  def both(key):
    x_t = jax.random.normal(jax.random.key(2), x0.shape)
    return (diffusion.sample(_oracle(x0), x_t, labels, 7, 1.0, null_class=2,
                             schedule=_schedule()),
            diffusion.sdedit(_oracle(x0), x0, labels, 0.3, 20, 1.0, key, null_class=2, eta=1.0,
                             schedule=_schedule()))

  sampled, edited = _run_fast(both, jax.random.key(1))
  np.testing.assert_allclose(sampled, x0, atol=2e-4)
  np.testing.assert_allclose(edited, x0, atol=2e-4)


def test_sdedit_timesteps_and_noise_level():
  """diffusers' img2img rule: int(n·strength) steps, the tail of set_timesteps(n)."""
  schedule = _schedule()
  tail = functools.partial(diffusion.sdedit_timesteps, schedule)
  np.testing.assert_array_equal(tail(10, 0.5), [400, 300, 200, 100, 0])
  np.testing.assert_array_equal(tail(10, 1.0), schedule.timesteps(10))
  assert len(tail(50, 0.25)) == 12
  x0, noise = jnp.ones((2, 1, 1, 1)), jnp.full((2, 1, 1, 1), -1.0)
  alpha = schedule.alphas_cumprod()[[999, 10]]
  noised = diffusion.add_noise(schedule, x0, noise, jnp.array([999, 10]))
  np.testing.assert_allclose(noised[:, 0, 0, 0], np.sqrt(alpha) - np.sqrt(1 - alpha), rtol=1e-6)


def test_sdedit_noises_to_the_strengths_level():
  """With ε̂ = 0 every DDIM step rescales by √(ᾱ_prev/ᾱ_t), so SDEdit returns x_t0/√ᾱ_t0:
  x₀ plus noise of standard deviation √((1 − ᾱ)/ᾱ) at the first timestep (400 here)."""
  schedule = _schedule()
  x0 = jnp.full((4, 32, 32, 4), 0.5)
  run = jax.jit(lambda key: diffusion.sdedit(
      lambda x, t, y: jnp.zeros_like(x), x0, jnp.zeros((4,), jnp.int32), 0.5, 10, 1.0, key,
      null_class=1, schedule=schedule)).lower(jax.random.key(0)).compile(FAST_COMPILE)
  out, again, other = run(jax.random.key(0)), run(jax.random.key(0)), run(jax.random.key(1))
  np.testing.assert_array_equal(again, out)                       # a function of the key
  assert np.abs(np.asarray(other) - np.asarray(out)).max() > 0.1
  alpha = schedule.alphas_cumprod()[400]
  spread = np.std(np.asarray(out) - 0.5) / np.sqrt((1 - alpha) / alpha)
  assert abs(spread - 1) < 0.03, spread
  assert abs(np.mean(np.asarray(out)) - 0.5) < 0.03 * np.sqrt((1 - alpha) / alpha)


@pytest.mark.parametrize("key,value", [
    ("_class_name", "EulerDiscreteScheduler"),
    ("prediction_type", "v_prediction"),
    ("beta_schedule", "squaredcos_cap_v2"),
    ("timestep_spacing", "karras"),
    ("thresholding", True),
    ("rescale_betas_zero_snr", True),
    ("trained_betas", [0.1, 0.2]),
    ("num_train_timesteps", 0),
])
def test_unsupported_scheduler_config(tmp_path, key, value):
  directory = tmp_path / "scheduler"
  shutil.copytree(TINY, directory)
  path = directory / diffusion.SCHEDULER_FILE
  config = json.loads(path.read_text())
  config[key] = value
  path.write_text(json.dumps(config))
  with pytest.raises(weight_files.WeightFileError) as e:
    diffusion.load_schedule(directory)
  message = str(e.value)
  assert str(path) in message and key in message and repr(value) in message, message


def test_bad_arguments_are_named():
  schedule = _schedule()
  for steps in (0, 1001, 2.5):
    with pytest.raises(ValueError, match=f"num_steps = {steps!r}"):
      schedule.timesteps(steps)
  for strength in (0, 1.5, -0.1):
    with pytest.raises(ValueError, match=f"strength = {strength!r}"):
      diffusion.sdedit_timesteps(schedule, 10, strength)
  with pytest.raises(ValueError, match="runs no step"):
    diffusion.sdedit_timesteps(schedule, 10, 0.05)
  with pytest.raises(ValueError, match="PRNG `key`"):
    diffusion.sample(lambda x, t, y: x, jnp.zeros((1, 2, 2, 1)), jnp.zeros((1,), jnp.int32), 2,
                     1.0, null_class=1, eta=0.5)
