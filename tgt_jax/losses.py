"""Losses shared by the TGT objective, the exploration and the evaluators.

One distance, `kl_divergence`, is used as the distillation loss, as the
student-teacher discrepancy that exploration ascends, and as a logged metric, so
the three can never drift apart.
"""

import jax
import jax.numpy as jnp


def _mean(values, weights):
  if weights is None:
    return jnp.mean(values)
  weights = weights.astype(values.dtype)
  return jnp.sum(values * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def cross_entropy(logits, labels, weights=None):
  """Mean softmax cross-entropy against integer labels."""
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32))
  nll = -jnp.take_along_axis(log_probs, labels[:, None], axis=-1)[:, 0]
  return _mean(nll, weights)


def kl_divergence(teacher_logits, student_logits, temperature=1.0):
  """Per-example KL(softmax(t/τ) ‖ softmax(s/τ)); the discrepancy d that exploration ascends."""
  t = jax.nn.log_softmax(teacher_logits.astype(jnp.float32) / temperature)
  s = jax.nn.log_softmax(student_logits.astype(jnp.float32) / temperature)
  return jnp.sum(jnp.exp(t) * (t - s), axis=-1)


def kd_loss(teacher_logits, student_logits, temperature=1.0, weights=None):
  """KD_τ: the temperature-τ KL, times τ² so gradients keep their scale (Hinton et al.)."""
  kl = kl_divergence(teacher_logits, student_logits, temperature)
  return temperature**2 * _mean(kl, weights)


def entropy(logits):
  """Per-example entropy (nats) of softmax(logits)."""
  log_p = jax.nn.log_softmax(logits.astype(jnp.float32))
  return -jnp.sum(jnp.exp(log_p) * log_p, axis=-1)


def accuracy(logits, labels, weights=None):
  return _mean((jnp.argmax(logits, -1) == labels).astype(jnp.float32), weights)


def gaussian_vae_loss(x, reconstruction, mean, logvar, pixel_sigma, beta):
  """Negative ELBO per example for a fixed-variance Gaussian likelihood.

  On 64 grey digit pixels a Bernoulli likelihood collapsed half the latent
  (docs/design.md, "Teachers"); a fixed σ≈0.1 Gaussian keeps every dimension active. Returns the mean
  loss, the mean reconstruction term and the mean KL (nats).
  """
  axes = tuple(range(1, x.ndim))
  sq = jnp.sum(jnp.square(x - reconstruction), axis=axes)
  recon = 0.5 * sq / pixel_sigma**2
  kl = gaussian_kl(mean, logvar)
  return jnp.mean(recon + beta * kl), jnp.mean(recon), jnp.mean(kl)


def gaussian_kl(mean, logvar):
  """Per-example KL(N(mean, exp(logvar)) ‖ N(0, I)) in nats, summed over the last axis."""
  return 0.5 * jnp.sum(jnp.exp(logvar) + jnp.square(mean) - 1.0 - logvar, axis=-1)
