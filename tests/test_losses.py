"""losses.py against the formulas written out by hand in numpy."""

import numpy as np
import pytest

from tgt_jax import losses


def _softmax(v):
  e = np.exp(v - v.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_kd_loss_is_temperature_scaled_kl(temperature):
  rng = np.random.default_rng(0)
  t, s = rng.normal(size=(6, 10)) * 3, rng.normal(size=(6, 10)) * 3
  p, q = _softmax(t / temperature), _softmax(s / temperature)
  by_hand = temperature**2 * np.mean(np.sum(p * (np.log(p) - np.log(q)), -1))
  np.testing.assert_allclose(losses.kd_loss(t, s, temperature), by_hand, rtol=1e-5)


def test_kl_is_zero_for_equal_logits_and_positive_otherwise():
  t = np.random.default_rng(1).normal(size=(4, 5))
  np.testing.assert_allclose(losses.kl_divergence(t, t), 0.0, atol=1e-6)
  assert np.all(np.asarray(losses.kl_divergence(t, t[::-1])) > 0)


def test_cross_entropy_and_accuracy_by_hand():
  logits = np.array([[2.0, 0.0, -1.0], [0.0, 3.0, 0.0]])
  labels = np.array([0, 2])
  p = _softmax(logits)
  np.testing.assert_allclose(losses.cross_entropy(logits, labels),
                             -np.mean(np.log(p[[0, 1], labels])), rtol=1e-6)
  assert float(losses.accuracy(logits, labels)) == 0.5
  weights = np.array([1.0, 0.0])   # a padded row counts for nothing
  np.testing.assert_allclose(losses.cross_entropy(logits, labels, weights), -np.log(p[0, 0]),
                             rtol=1e-6)


def test_entropy_of_uniform_is_log_k():
  np.testing.assert_allclose(losses.entropy(np.zeros((3, 7))), np.log(7), rtol=1e-6)


def test_gaussian_vae_loss_by_hand():
  rng = np.random.default_rng(2)
  x, r = rng.uniform(size=(2, 4, 4, 1)), rng.uniform(size=(2, 4, 4, 1))
  mean, logvar = rng.normal(size=(2, 3)), rng.normal(size=(2, 3)) * 0.1
  recon = 0.5 * np.sum((x - r) ** 2, axis=(1, 2, 3)) / 0.1**2
  kl = 0.5 * np.sum(np.exp(logvar) + mean**2 - 1 - logvar, -1)
  loss, nll, kl_out = losses.gaussian_vae_loss(x, r, mean, logvar, 0.1, 0.5)
  np.testing.assert_allclose(loss, np.mean(recon + 0.5 * kl), rtol=1e-5)
  np.testing.assert_allclose(nll, np.mean(recon), rtol=1e-5)
  np.testing.assert_allclose(kl_out, np.mean(kl), rtol=1e-5)
