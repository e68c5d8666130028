"""DDIM sampling with classifier-free guidance, and SDEdit, as pure jax functions.

How a diffusion teacher makes x': SDEdit noises a real example's latent to a chosen
level and denoises it under a class label, so the sample stays near the example (small
strength) or drifts to a fresh one of that class (strength 1). The schedule is read
from a diffusers `scheduler_config.json` and follows diffusers' DDIMScheduler step for step:
  * β linear or scaled_linear in float32 as torch.linspace defines it (from both ends),
    ᾱ accumulated in float64 and rounded once, as torch's CPU cumprod does: ᾱ is then
    within 3e-7 (relative) of diffusers' (torch's vectorised linspace rounds a few β
    differently per CPU), which matters because at t ≈ 999 x₀ is divided by √ᾱ ≈ 0.006;
  * `timesteps(n)` spaces n of the training steps (leading, trailing or linspace) and a
    step from t always goes to t − T//n (diffusers' rule, whatever the spacing);
    below step 0 ᾱ is 1 (set_alpha_to_one) or ᾱ₀.
`noise_fn(x, t, labels) → ε` is any denoiser (models/dit.py's `noise_fn`): x NHWC
float32, t int32 [B], labels int32 [B]. Guidance runs it once on [x; x] with
[labels; null] and returns uncond + g·(cond − uncond); g = 1 runs it once, unguided.
Everything jits with num_steps, strength and eta static (Python numbers); guidance may be
a traced value (then the doubled batch always runs).
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from tgt_jax.models import weight_files

SCHEDULER_FILE = "scheduler_config.json"
SCHEDULER_CLASSES = ("DDIMScheduler", "DDPMScheduler")    # both share the training schedule
BETA_SCHEDULES = ("linear", "scaled_linear")
SPACINGS = ("leading", "trailing", "linspace")

# DDIMScheduler.__init__ defaults: what a scheduler_config.json without the key means.
_DIFFUSERS_DEFAULTS = dict(
    num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
    trained_betas=None, clip_sample=True, set_alpha_to_one=True, steps_offset=0,
    prediction_type="epsilon", thresholding=False, clip_sample_range=1.0,
    timestep_spacing="leading", rescale_betas_zero_snr=False)


@dataclasses.dataclass(frozen=True)
class Schedule:
  """A DDIM noise schedule; the defaults are DiT-XL-2-256's scheduler_config.json."""
  num_train_timesteps: int = 1000
  beta_start: float = 0.0001
  beta_end: float = 0.02
  beta_schedule: str = "linear"
  clip_sample: bool = False
  clip_sample_range: float = 1.0
  set_alpha_to_one: bool = True
  steps_offset: int = 0
  timestep_spacing: str = "leading"

  @classmethod
  def from_diffusers(cls, config, path=SCHEDULER_FILE):
    """From the dict of a diffusers scheduler_config.json; what DDIM here cannot do is named."""
    path = str(path)

    def bad(key, value, why):
      raise weight_files.WeightFileError(f"{path!r}: {key} = {value!r} {why}.")

    if not isinstance(config, dict):
      bad("(top level)", type(config).__name__, "is not a JSON object")
    if config.get("_class_name") not in SCHEDULER_CLASSES:
      bad("_class_name", config.get("_class_name"), f"is not one of {SCHEDULER_CLASSES}")
    get = lambda key: config.get(key, _DIFFUSERS_DEFAULTS[key])
    for key, want in (("prediction_type", "epsilon"), ("trained_betas", None),
                      ("thresholding", False), ("rescale_betas_zero_snr", False)):
      if get(key) != want:
        bad(key, get(key), f"is not supported (only {want!r})")
    if get("beta_schedule") not in BETA_SCHEDULES:
      bad("beta_schedule", get("beta_schedule"), f"is not supported (one of {BETA_SCHEDULES})")
    if get("timestep_spacing") not in SPACINGS:
      bad("timestep_spacing", get("timestep_spacing"), f"is not supported (one of {SPACINGS})")
    steps = get("num_train_timesteps")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
      bad("num_train_timesteps", steps, "is not an integer ≥ 2")
    offset = get("steps_offset")
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset < steps:
      bad("steps_offset", offset, f"is not an integer in [0, {steps})")
    start, end = get("beta_start"), get("beta_end")
    if not 0 < start < end < 1:
      bad("beta_start, beta_end", (start, end), "are not 0 < beta_start < beta_end < 1")
    return cls(num_train_timesteps=steps, beta_start=float(start), beta_end=float(end),
               beta_schedule=get("beta_schedule"), clip_sample=bool(get("clip_sample")),
               clip_sample_range=float(get("clip_sample_range")),
               set_alpha_to_one=bool(get("set_alpha_to_one")), steps_offset=offset,
               timestep_spacing=get("timestep_spacing"))

  @functools.lru_cache(maxsize=8)
  def alphas_cumprod(self):
    """ᾱ_t for t = 0 … T−1, float32 numpy, as diffusers computes it (to a float32 ulp or two)."""
    if self.beta_schedule == "linear":
      betas = _torch_linspace(self.beta_start, self.beta_end, self.num_train_timesteps)
    else:
      betas = np.square(_torch_linspace(self.beta_start ** 0.5, self.beta_end ** 0.5,
                                        self.num_train_timesteps))
    alphas = np.cumprod((np.float32(1) - betas).astype(np.float64)).astype(np.float32)
    alphas.setflags(write=False)          # cached: shared by every caller
    return alphas

  def final_alpha_cumprod(self):
    """ᾱ one step past the end (t < 0): 1 with set_alpha_to_one, else ᾱ₀."""
    return np.float32(1.0) if self.set_alpha_to_one else self.alphas_cumprod()[0]

  def step_size(self, num_steps):
    """How far one of `num_steps` DDIM steps goes: T // n (diffusers' prev_timestep rule)."""
    return self.num_train_timesteps // num_steps

  def timesteps(self, num_steps):
    """The n DDIM timesteps, descending, int32 numpy (diffusers' set_timesteps)."""
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or not (
        1 <= num_steps <= self.num_train_timesteps):
      raise ValueError(f"num_steps = {num_steps!r}: expected an integer in "
                       f"[1, {self.num_train_timesteps}] (num_train_timesteps).")
    total = self.num_train_timesteps
    if self.timestep_spacing == "linspace":
      steps = np.linspace(0, total - 1, num_steps).round()[::-1]
    elif self.timestep_spacing == "leading":
      steps = (np.arange(num_steps) * (total // num_steps)).round()[::-1] + self.steps_offset
    else:
      steps = np.round(np.arange(total, 0, -total / num_steps)) - 1
    return steps.astype(np.int32)


def _torch_linspace(start, end, n):
  """torch.linspace in float32: start + i·step for the first half, end − (n−1−i)·step after."""
  start, end = np.float32(start), np.float32(end)
  step = (end - start) / np.float32(n - 1)
  i = np.arange(n, dtype=np.float32)
  return np.where(np.arange(n) < n // 2, start + step * i,
                  end - step * (np.float32(n - 1) - i)).astype(np.float32)


def load_schedule(path):
  """The Schedule of a diffusers scheduler_config.json (a file, or the directory holding it)."""
  path = epath.Path(path)
  if path.is_dir():
    path = path / SCHEDULER_FILE
  return Schedule.from_diffusers(weight_files.read_json(path), path)


def _per_example(values, x):
  """A scalar or [B] schedule value shaped to broadcast against x [B, ...]."""
  values = jnp.asarray(values, jnp.float32)
  return values.reshape(values.shape + (1,) * (x.ndim - values.ndim)) if values.ndim else values


def add_noise(schedule, x0, noise, t):
  """x_t = √ᾱ_t·x₀ + √(1 − ᾱ_t)·ε (t: int scalar or [B], 0 ≤ t < T)."""
  alpha = _per_example(jnp.asarray(schedule.alphas_cumprod())[t], x0)
  return jnp.sqrt(alpha) * x0 + jnp.sqrt(1 - alpha) * noise


def ddim_step(schedule, num_steps, eps, t, x_t, eta=0.0, noise=None):
  """One DDIM step from t to t − T//num_steps: (x_prev, predicted x₀), as diffusers' step().

  t is an int scalar or [B] (traceable); eta > 0 adds eta·σ_t·noise (noise ~ N(0, I),
  shaped like x_t), eta = 1 being DDPM's variance.
  """
  alphas = jnp.asarray(schedule.alphas_cumprod())
  t = jnp.asarray(t, jnp.int32)
  prev = t - schedule.step_size(num_steps)
  alpha = _per_example(alphas[t], x_t)
  alpha_prev = _per_example(jnp.where(prev >= 0, alphas[jnp.maximum(prev, 0)],
                                      schedule.final_alpha_cumprod()), x_t)
  x0 = (x_t - jnp.sqrt(1 - alpha) * eps) / jnp.sqrt(alpha)
  if schedule.clip_sample:
    x0 = jnp.clip(x0, -schedule.clip_sample_range, schedule.clip_sample_range)
  if eta == 0:
    return jnp.sqrt(alpha_prev) * x0 + jnp.sqrt(1 - alpha_prev) * eps, x0
  if noise is None:
    raise ValueError(f"ddim_step with eta = {eta!r} needs `noise` (shaped like x_t).")
  variance = (1 - alpha_prev) / (1 - alpha) * (1 - alpha / alpha_prev)
  std = eta * jnp.sqrt(variance)
  x_prev = jnp.sqrt(alpha_prev) * x0 + jnp.sqrt(1 - alpha_prev - std ** 2) * eps
  return x_prev + std * noise, x0


def guided_noise(noise_fn, x, t, labels, guidance, null_class):
  """ε of x at t under `labels`, with classifier-free guidance `guidance` (1: none, 0: unconditional).

  t is an int scalar; labels int [B] in [0, null_class]. With guidance ≠ 1 the model runs
  once on the doubled batch [x; x] with [labels; null_class].
  """
  b = x.shape[0]
  labels = jnp.asarray(labels, jnp.int32)
  if isinstance(guidance, (int, float)) and guidance == 1:
    return noise_fn(x, jnp.full((b,), t, jnp.int32), labels)
  both = noise_fn(jnp.concatenate([x, x]), jnp.full((2 * b,), t, jnp.int32),
                  jnp.concatenate([labels, jnp.full((b,), null_class, jnp.int32)]))
  cond, uncond = both[:b], both[b:]
  return uncond + guidance * (cond - uncond)


def denoise(noise_fn, x_t, labels, timesteps, num_steps, guidance, *, null_class,
            schedule=Schedule(), eta=0.0, key=None):
  """DDIM steps from x_t over `timesteps` (descending int numpy, from schedule.timesteps(num_steps)).

  One jax.lax.scan; eta > 0 draws each step's noise from fold_in(key, step index).
  """
  if eta and key is None:
    raise ValueError(f"eta = {eta!r} > 0 draws noise: pass a PRNG `key`.")

  def one_step(x, step):
    index, t = step
    eps = guided_noise(noise_fn, x, t, labels, guidance, null_class)
    noise = None if not eta else jax.random.normal(jax.random.fold_in(key, index), x.shape,
                                                   x.dtype)
    return ddim_step(schedule, num_steps, eps, t, x, eta, noise)[0], None

  timesteps = jnp.asarray(timesteps, jnp.int32)
  x, _ = jax.lax.scan(one_step, x_t, (jnp.arange(timesteps.shape[0]), timesteps))
  return x


def sample(noise_fn, x_T, labels, num_steps, guidance, *, null_class, schedule=Schedule(),
           eta=0.0, key=None):
  """A class-conditional sample x₀ from pure noise x_T ~ N(0, I) in num_steps DDIM steps."""
  return denoise(noise_fn, x_T, labels, schedule.timesteps(num_steps), num_steps, guidance,
                 null_class=null_class, schedule=schedule, eta=eta, key=key)


def sdedit_timesteps(schedule, num_steps, strength):
  """The tail of timesteps(num_steps) that SDEdit runs at `strength` ∈ (0, 1] (diffusers' img2img).

  min(int(num_steps·strength), num_steps) steps, from the first timestep at or below the
  strength's noise level down to the schedule's last.
  """
  if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0 < strength <= 1:
    raise ValueError(f"strength = {strength!r}: expected a number in (0, 1].")
  count = min(int(num_steps * strength), num_steps)
  if count < 1:
    raise ValueError(f"strength = {strength!r} with num_steps = {num_steps} runs no step: "
                     f"use strength ≥ {1 / num_steps:.3g} or more steps.")
  return schedule.timesteps(num_steps)[num_steps - count:]


def sdedit(noise_fn, x0, labels, strength, num_steps, guidance, key, *, null_class,
           schedule=Schedule(), eta=0.0):
  """A sample near the clean latent x0: noise it to `strength`'s timestep, then denoise to 0.

  strength ∈ (0, 1] (static): the fraction of the num_steps-step schedule that is run;
  1 starts from (almost) pure noise. `key` draws the starting noise (and eta's).
  """
  timesteps = sdedit_timesteps(schedule, num_steps, strength)
  noise_key, step_key = jax.random.split(key)
  x_t = add_noise(schedule, x0, jax.random.normal(noise_key, x0.shape, x0.dtype), timesteps[0])
  return denoise(noise_fn, x_t, labels, timesteps, num_steps, guidance, null_class=null_class,
                 schedule=schedule, eta=eta, key=step_key)
