"""Teacher Guided Training: exploration around real samples and the TGT loss.

The functions mirror the paper's equations (docs/design.md, "The method"):

  z   = E(x)                                   encode
  z'  = z + σ·ε   |   z' ~ N(0, I)             random_latents | prior_latents
  z'  ← Π_ε(z' + η·g/‖g‖),  g = ∇ d(z')         ascend (latent or input space)
  x'  = G(z');  p' = T(x');  p = T(x)           synthesize
  x'  = G(z', c)  (a class-conditional G)       synthesize, conditioning_labels
  L   = CE(y, S(x)) + α·KD_τ(p, S(x)) + λ·KD_τ(p', S(x'))      tgt_loss

where d = KL(softmax(T(·)/τ) ‖ softmax(S(·)/τ)) is `losses.kl_divergence`.

Discrete data (text): G decodes to token ids, which have no gradient. A teacher
with `decode_soft` (z → token distributions) gives the continuous relaxation:
TGT-gradient ascends d through the soft tokens, whose expected embeddings the
labeler and the student read (models/text.py), then decodes the final z' to ids.
The input-space variant ascends the soft tokens themselves (clipped to [0, 1])
and keeps each position's most likely token.

Class-conditional G (a diffusion model, teachers/diffusion.py): a teacher with
`decode_conditional` makes x' = G(z', c) under a class c per sample: the real example's
label y (or the labeler's argmax T(x)) for TGT-random, uniformly drawn classes for
TGT-prior. The gradient methods are refused: they would differentiate through the
sampler's whole chain of denoising steps.
Teacher and student are passed as pure apply functions, so this module knows
nothing about Flax, checkpoints or sharding.
"""

import dataclasses
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import optax

from tgt_jax import losses

# The generator explores: x' = G(z').
EXPLORATION_METHODS = ("tgt_random", "tgt_prior", "tgt_gradient", "tgt_gradient_input")
# Distillation baselines that fill the same λ-term with x' made without a generator:
# kd_mixup mixes the batch with itself (teacher and student see the same mixed images,
# "consistent" as in Beyer et al. 2022); kd_transfer takes real unlabelled images from
# batch["transfer"] (the classic large transfer set: the ceiling TGT is measured against).
REAL_TRANSFER_METHODS = ("kd_mixup", "kd_transfer")
SYNTHETIC_METHODS = REAL_TRANSFER_METHODS + EXPLORATION_METHODS
METHODS = ("ce", "kd") + SYNTHETIC_METHODS


@dataclasses.dataclass(frozen=True)
class Teacher:
  """The frozen generative teacher as pure functions of (params, input)."""
  encode: Callable[[Any, jax.Array], jax.Array]     # (params, x) → z = E(x)
  decode: Callable[[Any, jax.Array], jax.Array]     # (params, z) → x = G(z)
  label: Callable[[Any, jax.Array], jax.Array]      # (params, x) → logits T(x)
  latent_dim: int
  pixel_range: tuple[float, float]
  decode_soft: Optional[Callable[[Any, jax.Array], jax.Array]] = None  # text: z → soft tokens
  # A class-conditional G: (params, z', labels, sigma) → x', sigma (a static float) being
  # the noise z' carries (tgt.sigma for E(x) + σ·ε; inf for a prior draw). When present it
  # makes x'; `decode` stays the plain z → x (E→G reconstructions).
  decode_conditional: Optional[Callable] = None
  num_classes: int = 0                  # the classes decode_conditional takes
  condition_on_labeler: bool = False    # condition on argmax T(x) instead of the label y


@dataclasses.dataclass(frozen=True)
class TGTConfig:
  """The method's hyper-parameters (hashable: a static argument of the jitted step)."""
  method: str = "tgt_random"
  sigma: float = 1.0            # latent noise of TGT-random and the gradient methods' start
  eta: float = 1.0              # length of each normalised ascent step
  steps: int = 1                # k ascent steps
  epsilon: float = float("inf")  # radius of the ball around the start that ascent stays in
  num_samples: int = 1          # m synthetic samples per real one
  alpha: float = 1.0            # weight of KD on real data
  lam: float = 1.0              # λ, weight of KD on synthetic data
  temperature: float = 1.0      # τ
  ce_weight: float = 1.0        # 0 gives the label-free "teacher only" objective

  def __post_init__(self):
    if self.method not in METHODS:
      raise ValueError(f"Unknown method {self.method!r}; choose one of {list(METHODS)}.")
    # `not x >= 0` also catches NaN, which every comparison rejects.
    for name in ("sigma", "eta", "steps", "alpha", "lam", "ce_weight"):
      value = getattr(self, name)
      if not (value >= 0 and value < float("inf")):
        raise ValueError(f"tgt.{name} must be a finite number >= 0, got {value}.")
    if not self.epsilon > 0:
      raise ValueError(f"tgt.epsilon (ball radius) must be > 0 (inf for no ball), got "
                       f"{self.epsilon}.")
    if self.num_samples < 1:
      raise ValueError(f"tgt.num_samples (m) must be >= 1, got {self.num_samples}.")
    if not (self.temperature > 0 and self.temperature < float("inf")):
      raise ValueError(f"tgt.temperature must be a finite number > 0, got {self.temperature}.")

  @property
  def uses_synthetic(self):
    return self.method in SYNTHETIC_METHODS

  @property
  def needs_generator(self):
    return self.method in EXPLORATION_METHODS

  @property
  def alpha_eff(self):
    return 0.0 if self.method == "ce" else self.alpha

  @property
  def lam_eff(self):
    return self.lam if self.uses_synthetic else 0.0


# --- exploration ---------------------------------------------------------------


def random_latents(rng, z, sigma):
  """TGT-random: z' = z + σ·ε, ε ~ N(0, I)."""
  return z + sigma * jax.random.normal(rng, z.shape, z.dtype)


def prior_latents(rng, num, latent_dim, dtype=jnp.float32):
  """TGT-prior: z' ~ N(0, I), no data needed."""
  return jax.random.normal(rng, (num, latent_dim), dtype)


def _per_example_norm(v):
  return jnp.sqrt(jnp.sum(jnp.square(v), axis=tuple(range(1, v.ndim)), keepdims=True))


def normalized_step(v, grad, eta):
  """v + η·g/‖g‖, normalised per example (a zero gradient gives no step)."""
  return v + eta * grad / jnp.maximum(_per_example_norm(grad), 1e-12)


def project_to_ball(v, center, radius):
  """Π_ε: the closest point to v with ‖v − center‖ ≤ radius, per example."""
  if radius == float("inf"):
    return v
  offset = v - center
  scale = jnp.minimum(1.0, radius / jnp.maximum(_per_example_norm(offset), 1e-12))
  return center + offset * scale


def ascend(discrepancy, start, center, eta, steps, radius, clip=None):
  """k steps of normalised gradient ascent on sum_i discrepancy(v)_i.

  Examples are independent (no batch statistics anywhere), so the gradient of
  the sum is each example's own gradient. Returns the final point.
  """
  grad = jax.grad(lambda v: jnp.sum(discrepancy(v)))
  v = start
  for _ in range(steps):       # k is small and static: unrolled, XLA sees it all
    g = grad(v)
    v = project_to_ball(normalized_step(v, g, eta), center, radius)
    if clip is not None:
      v = jnp.clip(v, *clip)
  return v


def mixup(rng, x, num_samples):
  """m mixes per example of x, each with weight w ~ U(0, 1): w·x_i + (1 − w)·x_{n−1−i}.

  The partner is the batch reversed: batches are random draws, so pairs are random,
  and a reversal (unlike a gather) keeps the batch's sharding as it is.
  """
  x = jnp.repeat(x, num_samples, axis=0)
  weight = jax.random.uniform(rng, (x.shape[0],) + (1,) * (x.ndim - 1), x.dtype)
  return weight * x + (1 - weight) * x[::-1]


def conditioning_labels(rng, cfg, teacher, teacher_params, x, labels):
  """The class each of the m·n x' is made under: its real example's label y (or the
  labeler's argmax T(x)) for TGT-random; uniform over the classes for TGT-prior, so a
  tail class gets as many samples as a head one."""
  n, m = x.shape[0], cfg.num_samples
  if cfg.method == "tgt_prior":
    return jax.random.randint(rng, (n * m,), 0, teacher.num_classes)
  if teacher.condition_on_labeler:
    labels = jnp.argmax(teacher.label(teacher_params, x), axis=-1)
  elif labels is None:
    raise ValueError("A class-conditional teacher makes x' under each example's label: pass "
                     "the batch's labels (or set teacher.condition_on='labeler').")
  return jnp.repeat(jnp.asarray(labels, jnp.int32), m, axis=0)


def _conditional_synthesis(rng, cfg, teacher, teacher_params, x, labels):
  """x' = G(z', c) of a class-conditional teacher for tgt_random and tgt_prior."""
  if cfg.method not in ("tgt_random", "tgt_prior"):
    raise ValueError(f"method {cfg.method!r} with a class-conditional (diffusion) teacher: "
                     "refused, it would differentiate through the sampler's denoising chain; "
                     "use tgt_random or tgt_prior.")
  classes = conditioning_labels(jax.random.fold_in(rng, 1), cfg, teacher, teacher_params, x,
                                labels)
  if cfg.method == "tgt_prior":
    z = prior_latents(rng, x.shape[0] * cfg.num_samples, teacher.latent_dim)
    return teacher.decode_conditional(teacher_params, z, classes, float("inf"))
  z = jnp.repeat(teacher.encode(teacher_params, x), cfg.num_samples, axis=0)
  return teacher.decode_conditional(teacher_params, random_latents(rng, z, cfg.sigma), classes,
                                    cfg.sigma)


def synthesize(rng, cfg, teacher, teacher_params, student_apply, student_params, x,
               transfer=None, labels=None):
  """x' for the method in `cfg`: m synthetic inputs per real input (stop-gradient).

  labels: the batch's y, which a class-conditional teacher makes x' under (unused otherwise).
  """
  if cfg.method == "kd_transfer":
    if transfer is None:
      raise ValueError("kd_transfer needs the unlabelled images in batch['transfer'].")
    return transfer
  if cfg.method == "kd_mixup":
    if jnp.issubdtype(x.dtype, jnp.integer):
      raise ValueError("kd_mixup mixes continuous inputs; these are token ids (text).")
    return jax.lax.stop_gradient(mixup(rng, x, cfg.num_samples))
  m = cfg.num_samples
  teacher_params = jax.lax.stop_gradient(teacher_params)
  student_params = jax.lax.stop_gradient(student_params)
  if teacher.decode_conditional is not None:
    return jax.lax.stop_gradient(_conditional_synthesis(rng, cfg, teacher, teacher_params, x,
                                                        labels))

  def discrepancy_of_input(x_):
    return losses.kl_divergence(teacher.label(teacher_params, x_),
                                student_apply(student_params, x_), cfg.temperature)

  if cfg.method == "tgt_prior":
    x_syn = teacher.decode(teacher_params, prior_latents(rng, x.shape[0] * m, teacher.latent_dim))
  else:
    z = jnp.repeat(teacher.encode(teacher_params, x), m, axis=0)
    z_start = random_latents(rng, z, cfg.sigma)
    relaxed = teacher.decode_soft or teacher.decode   # G, differentiable
    if cfg.method == "tgt_gradient":
      z_start = ascend(lambda z_: discrepancy_of_input(relaxed(teacher_params, z_)),
                       z_start, z, cfg.eta, cfg.steps, cfg.epsilon)
    if cfg.method == "tgt_gradient_input":
      x_start = relaxed(teacher_params, z_start)
      clip = teacher.pixel_range if teacher.decode_soft is None else (0.0, 1.0)
      x_syn = ascend(discrepancy_of_input, x_start, x_start, cfg.eta, cfg.steps, cfg.epsilon,
                     clip=clip)
      if teacher.decode_soft is not None:
        x_syn = jnp.argmax(x_syn, axis=-1).astype(jnp.int32)
    else:
      x_syn = teacher.decode(teacher_params, z_start)
  return jax.lax.stop_gradient(x_syn)


# --- the objective -------------------------------------------------------------


def tgt_loss(student_params, student_apply, cfg, batch, teacher_logits, x_syn,
             teacher_logits_syn):
  """CE(y, S(x)) + α·KD_τ(T(x), S(x)) + λ·KD_τ(T(x'), S(x')), and its terms.

  Teacher outputs arrive precomputed (they do not depend on the student);
  terms whose weight is 0 for the method are not computed at all.
  """
  logits = student_apply(student_params, batch["image"])
  terms = {"ce": losses.cross_entropy(logits, batch["label"])}
  total = cfg.ce_weight * terms["ce"]
  if cfg.alpha_eff > 0:
    terms["kd_real"] = losses.kd_loss(teacher_logits, logits, cfg.temperature)
    total += cfg.alpha_eff * terms["kd_real"]
  if cfg.lam_eff > 0:
    terms["kd_synthetic"] = losses.kd_loss(teacher_logits_syn, student_apply(student_params, x_syn),
                                           cfg.temperature)
    total += cfg.lam_eff * terms["kd_synthetic"]
  terms["total"] = total
  return total, terms


def teacher_targets(rng, cfg, teacher, teacher_params, student_apply, student_params, batch):
  """Everything the loss needs from the teacher: T(x), x' and T(x') (None where unused).

  A batch with "synthetic_image" and "synthetic_teacher_logits" brings x' and T(x') made
  offline (exploration that does not depend on the student); T(x) is always online.
  """
  teacher_logits = x_syn = teacher_logits_syn = None
  if cfg.alpha_eff > 0:
    teacher_logits = teacher.label(teacher_params, batch["image"])
  if cfg.lam_eff > 0 and "synthetic_image" in batch:
    x_syn, teacher_logits_syn = batch["synthetic_image"], batch["synthetic_teacher_logits"]
  elif cfg.lam_eff > 0:
    x_syn = synthesize(rng, cfg, teacher, teacher_params, student_apply, student_params,
                       batch["image"], batch.get("transfer"), batch.get("label"))
    teacher_logits_syn = teacher.label(teacher_params, x_syn)
  return jax.lax.stop_gradient((teacher_logits, x_syn, teacher_logits_syn))


def student_update(state, tx, student_apply, cfg, batch, targets):
  """One optax step on tgt_loss given teacher_targets' output: (new state, loss terms)."""
  (_, terms), grads = jax.value_and_grad(tgt_loss, has_aux=True)(
      state.params, student_apply, cfg, batch, *targets)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  terms["grad_norm"] = optax.tree.norm(grads)
  return state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                       opt_state=opt_state), terms
