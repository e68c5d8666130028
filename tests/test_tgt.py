"""tgt.py: exploration does what the equations say, and the loss has the right terms."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tgt_jax import losses, models, tgt
from tgt_jax.engine.state import TrainState

LATENT = 8
# Jitted as in the train step (and so compiled once, not dispatched op by op on 8 devices).
synthesize = jax.jit(tgt.synthesize, static_argnums=(1, 2, 4))


def _random_teacher(generator, labeler, student, x, seed):
  """(tgt.Teacher, its params, student apply, student params), all random-init. The labeler's
  logits are scaled ×5: a sharper teacher, so the discrepancy is clearly non-zero."""
  k = jax.random.split(jax.random.key(seed), 4)
  params = {"generator": jax.jit(generator.init)(k[0], x, k[1]),
            "labeler": jax.jit(labeler.init)(k[2], x)}
  soft = getattr(generator, "decode_soft", None)
  teacher_fns = tgt.Teacher(
      encode=lambda p, x: generator.apply(p["generator"], x, method=generator.encode)[0],
      decode=lambda p, z: generator.apply(p["generator"], z, method=generator.decode),
      label=lambda p, x: labeler.apply(p["labeler"], x) * 5.0,
      latent_dim=LATENT, pixel_range=(0.0, 1.0),
      decode_soft=(lambda p, z: generator.apply(p["generator"], z, method=soft))
      if soft is not None else None)
  return teacher_fns, params, student.apply, jax.jit(student.init)(k[3], x)


@pytest.fixture(scope="module")
def setup():
  """Random-init teacher and student: the discrepancy between them is smooth and non-zero."""
  teacher = _random_teacher(models.generator("conv_vae", (8, 8, 1), LATENT),
                            models.classifier("cnn_labeler", 10), models.classifier("mlp", 10),
                            jnp.zeros((1, 8, 8, 1)), seed=0)
  return *teacher, jax.random.uniform(jax.random.key(1), (32, 8, 8, 1))


def _latent_discrepancy(setup):
  teacher_fns, params, student_apply, student_params, _ = setup
  return jax.jit(lambda z: losses.kl_divergence(
      teacher_fns.label(params, teacher_fns.decode(params, z)),
      student_apply(student_params, teacher_fns.decode(params, z))))


def test_gradient_step_beats_random_step_of_same_norm(setup):
  d = _latent_discrepancy(setup)
  z = jax.random.normal(jax.random.key(2), (32, LATENT))
  eta = 0.05
  z_grad = tgt.ascend(d, z, z, eta, 1, float("inf"))
  direction = jax.random.normal(jax.random.key(3), z.shape)
  z_rand = tgt.normalized_step(z, direction, eta)
  np.testing.assert_allclose(np.linalg.norm(z_grad - z, axis=-1), eta, rtol=1e-4)
  np.testing.assert_allclose(np.linalg.norm(z_rand - z, axis=-1), eta, rtol=1e-4)
  gain_grad, gain_rand = d(z_grad) - d(z), d(z_rand) - d(z)
  assert float(jnp.mean(gain_grad)) > 0
  assert float(jnp.mean(gain_grad)) > float(jnp.mean(gain_rand))
  assert np.mean(np.asarray(gain_grad) > np.asarray(gain_rand)) > 0.9


def test_ascent_stays_in_epsilon_ball(setup):
  d = _latent_discrepancy(setup)
  z = jax.random.normal(jax.random.key(4), (32, LATENT))
  out = tgt.ascend(d, z, z, eta=0.4, steps=5, radius=0.5)
  dist = np.linalg.norm(np.asarray(out - z), axis=-1)
  assert dist.max() <= 0.5 + 1e-5
  assert dist.max() > 0.45           # the ball is reached, so the projection was exercised


def test_input_space_ascent_is_clipped_to_pixel_range(setup):
  teacher_fns, params, student_apply, student_params, images = setup
  d = lambda x: losses.kl_divergence(teacher_fns.label(params, x), student_apply(student_params, x))
  out = jax.jit(lambda x: tgt.ascend(d, x, x, eta=2.0, steps=3, radius=float("inf"),
                                     clip=(0.0, 1.0)))(images)     # compiled, not op by op
  assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
  assert float(jnp.mean(d(out))) > float(jnp.mean(d(images)))


def test_random_and_prior_latents():
  z = jnp.ones((1000, 4))
  moved = tgt.random_latents(jax.random.key(0), z, 0.5)
  np.testing.assert_allclose(np.std(np.asarray(moved - z)), 0.5, rtol=0.05)
  prior = tgt.prior_latents(jax.random.key(1), 1000, 4)
  assert prior.shape == (1000, 4)
  np.testing.assert_allclose(np.std(np.asarray(prior)), 1.0, rtol=0.05)


@pytest.mark.parametrize("method", tgt.SYNTHETIC_METHODS)
def test_synthesize_shapes_ranges_and_determinism(setup, method):
  teacher_fns, params, student_apply, student_params, images = setup
  cfg = tgt.TGTConfig(method=method, num_samples=3, steps=2, eta=0.5)
  transfer = images[::-1].repeat(3, axis=0)       # kd_transfer's unlabelled real images
  run = lambda key: synthesize(key, cfg, teacher_fns, params, student_apply, student_params,
                                   images, transfer)
  x_syn = run(jax.random.key(5))
  assert x_syn.shape == (3 * images.shape[0], 8, 8, 1)
  assert float(x_syn.min()) >= 0.0 and float(x_syn.max()) <= 1.0
  np.testing.assert_array_equal(x_syn, run(jax.random.key(5)))
  if method == "kd_transfer":
    np.testing.assert_array_equal(x_syn, transfer)
  else:
    assert not np.array_equal(x_syn, run(jax.random.key(6)))


def test_kd_transfer_without_transfer_images_is_a_clear_error(setup):
  teacher_fns, params, student_apply, student_params, images = setup
  cfg = tgt.TGTConfig(method="kd_transfer")
  with pytest.raises(ValueError, match="batch\\['transfer'\\]"):
    synthesize(jax.random.key(0), cfg, teacher_fns, params, student_apply, student_params,
                   images)


def test_mixup_mixes_pairs_of_the_batch():
  # Example i is the constant image i: a mix is constant at a value between two of them.
  images = jnp.arange(16, dtype=jnp.float32)[:, None, None, None] * jnp.ones((16, 8, 8, 1))
  mixed = np.asarray(tgt.mixup(jax.random.key(0), images, num_samples=2))
  assert mixed.shape == (32, 8, 8, 1)
  np.testing.assert_allclose(mixed.min(axis=(1, 2, 3)), mixed.max(axis=(1, 2, 3)))
  source = np.repeat(np.arange(16.0), 2)
  assert np.all(mixed[:, 0, 0, 0] >= 0) and np.all(mixed[:, 0, 0, 0] <= 15)
  assert np.mean(np.abs(mixed[:, 0, 0, 0] - source)) > 0.5     # really mixed, not copies
  partner = source[::-1]
  lo, hi = np.minimum(source, partner), np.maximum(source, partner)
  assert np.all(mixed[:, 0, 0, 0] >= lo - 1e-6) and np.all(mixed[:, 0, 0, 0] <= hi + 1e-6)


def test_loss_terms_per_method(setup):
  teacher_fns, params, student_apply, student_params, images = setup
  batch = {"image": images, "label": jnp.arange(32) % 10}
  expected = {"ce": {"ce", "total"}, "kd": {"ce", "kd_real", "total"},
              "tgt_random": {"ce", "kd_real", "kd_synthetic", "total"}}
  for method, keys in expected.items():
    cfg = tgt.TGTConfig(method=method, alpha=0.5, lam=2.0)
    targets = tgt.teacher_targets(jax.random.key(0), cfg, teacher_fns, params, student_apply,
                                  student_params, batch)
    total, terms = tgt.tgt_loss(student_params, student_apply, cfg, batch, *targets)
    assert set(terms) == keys
    by_hand = terms["ce"] + 0.5 * terms.get("kd_real", 0.0) + 2.0 * terms.get("kd_synthetic", 0.0)
    np.testing.assert_allclose(total, by_hand, rtol=1e-6)


@pytest.mark.parametrize("method", ["tgt_random", "tgt_prior"])
def test_cached_samples_give_the_online_loss_and_update(setup, method):
  """x' and T(x') read from a cache (batch keys synthetic_*) go through the same loss: with the
  samples online exploration made, the terms and the update are the online ones, exactly."""
  teacher_fns, params, student_apply, student_params, images = setup
  cfg = tgt.TGTConfig(method=method, num_samples=2)
  batch = {"image": images, "label": jnp.arange(32) % 10}
  online = tgt.teacher_targets(jax.random.key(3), cfg, teacher_fns, params, student_apply,
                               student_params, batch)
  cached_batch = {**batch, "synthetic_image": online[1], "synthetic_teacher_logits": online[2]}
  offline_teacher = dataclasses.replace(teacher_fns, encode=None, decode=None)   # no E, G
  cached = tgt.teacher_targets(jax.random.key(99), cfg, offline_teacher, params, student_apply,
                               student_params, cached_batch)
  for a, b in zip(online, cached):
    np.testing.assert_array_equal(a, b)
  tx = optax.sgd(0.1)
  state = TrainState(jnp.asarray(0), student_params, tx.init(student_params))
  (new_online, terms_online) = tgt.student_update(state, tx, student_apply, cfg, batch, online)
  (new_cached, terms_cached) = tgt.student_update(state, tx, student_apply, cfg, cached_batch,
                                                  cached)
  assert terms_online["kd_synthetic"] > 0
  for key in terms_online:
    np.testing.assert_array_equal(terms_online[key], terms_cached[key])
  for a, b in zip(jax.tree.leaves(new_online.params), jax.tree.leaves(new_cached.params)):
    np.testing.assert_array_equal(a, b)


def test_synthetic_loss_has_no_gradient_through_exploration(setup):
  """x' is a constant for the student's update: only S(x') is differentiated."""
  teacher_fns, params, student_apply, student_params, images = setup
  cfg = tgt.TGTConfig(method="tgt_gradient", alpha=0.0, ce_weight=0.0)
  batch = {"image": images, "label": jnp.zeros(32, jnp.int32)}

  def loss(sp):
    targets = tgt.teacher_targets(jax.random.key(0), cfg, teacher_fns, params, student_apply, sp,
                                  batch)
    return tgt.tgt_loss(sp, student_apply, cfg, batch, *targets)[0]

  targets = tgt.teacher_targets(jax.random.key(0), cfg, teacher_fns, params, student_apply,
                                student_params, batch)
  fixed = lambda sp: tgt.tgt_loss(sp, student_apply, cfg, batch, *targets)[0]
  for a, b in zip(jax.tree.leaves(jax.grad(loss)(student_params)),
                  jax.tree.leaves(jax.grad(fixed)(student_params))):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("field,value,match", [
    ("method", "tgt_magic", "Unknown method 'tgt_magic'"),
    ("sigma", -1.0, "tgt.sigma must be a finite number >= 0, got -1.0"),
    ("eta", -0.5, "tgt.eta must be a finite number >= 0, got -0.5"),
    ("steps", -2, "tgt.steps must be a finite number >= 0, got -2"),
    ("epsilon", 0.0, "epsilon"),
    ("num_samples", 0, "num_samples"),
    ("temperature", 0.0, "temperature"),
    ("alpha", float("nan"), "tgt.alpha must be a finite number >= 0, got nan"),
    ("lam", float("inf"), "tgt.lam must be a finite number >= 0, got inf"),
    ("temperature", float("nan"), "tgt.temperature must be a finite number > 0, got nan"),
    ("epsilon", float("nan"), "tgt.epsilon"),
])
def test_bad_hyperparameters_name_the_value(field, value, match):
  with pytest.raises(ValueError, match=match):
    dataclasses.replace(tgt.TGTConfig(), **{field: value})


# --- the discrete domain (text) ------------------------------------------------

TEXT_VOCAB, TEXT_LEN = 40, 8


@pytest.fixture(scope="module")
def text_setup():
  """Random-init sequence VAE, transformer labeler and bag-of-embeddings student."""
  x = jax.random.randint(jax.random.key(0), (16, TEXT_LEN), 3, TEXT_VOCAB).astype(jnp.int32)
  teacher = _random_teacher(
      models.generator("text_vae_tiny", (TEXT_LEN,), LATENT, vocab_size=TEXT_VOCAB),
      models.classifier("text_tiny", 5, vocab_size=TEXT_VOCAB),
      models.classifier("bag_of_embeddings", 5, vocab_size=TEXT_VOCAB), x, seed=1)
  return *teacher, x


def test_relaxed_gradient_step_beats_random_step_of_same_norm(text_setup):
  """TGT-gradient on text: through soft tokens, the step raises the discrepancy more than
  a random step of the same length does."""
  teacher_fns, params, student_apply, student_params, _ = text_setup

  @jax.jit
  def d(z):
    soft = teacher_fns.decode_soft(params, z)
    return losses.kl_divergence(teacher_fns.label(params, soft),
                                student_apply(student_params, soft))

  z = jax.random.normal(jax.random.key(2), (64, LATENT))
  eta = 0.05
  gain_grad = d(tgt.ascend(d, z, z, eta, 1, float("inf"))) - d(z)
  gains_rand = [d(tgt.normalized_step(z, jax.random.normal(jax.random.key(10 + i), z.shape), eta))
                - d(z) for i in range(5)]
  assert float(jnp.mean(gain_grad)) > 0
  assert float(jnp.mean(gain_grad)) > max(float(jnp.mean(g)) for g in gains_rand)


@pytest.mark.parametrize("method", ["tgt_random", "tgt_prior", "tgt_gradient",
                                    "tgt_gradient_input"])
def test_text_exploration_decodes_to_token_ids(text_setup, method):
  teacher_fns, params, student_apply, student_params, x = text_setup
  cfg = tgt.TGTConfig(method=method, num_samples=2, eta=2.0)
  out = synthesize(jax.random.key(3), cfg, teacher_fns, params, student_apply,
                       student_params, x)
  assert out.shape == (32, TEXT_LEN) and out.dtype == jnp.int32
  assert int(out.min()) >= 0 and int(out.max()) < TEXT_VOCAB


def test_input_space_ascent_on_soft_tokens_changes_tokens(text_setup):
  """The input-space variant moves the soft tokens and can change the decoded words."""
  teacher_fns, params, student_apply, student_params, x = text_setup
  key = jax.random.key(4)
  random_ids = synthesize(key, tgt.TGTConfig(method="tgt_random"), teacher_fns, params,
                              student_apply, student_params, x)
  ascended = synthesize(key, tgt.TGTConfig(method="tgt_gradient_input", eta=5.0, steps=3),
                            teacher_fns, params, student_apply, student_params, x)
  assert bool(jnp.any(random_ids != ascended))


def test_mixup_refuses_token_ids(text_setup):
  teacher_fns, params, student_apply, student_params, x = text_setup
  with pytest.raises(ValueError, match="token ids"):
    synthesize(jax.random.key(0), tgt.TGTConfig(method="kd_mixup"), teacher_fns, params,
                   student_apply, student_params, x)


# --- a class-conditional G (teachers/diffusion.py) ---------------------------------------------

CLASSES = 5


def _conditional_teacher(on_labeler=False):
  """A toy class-conditional teacher whose x' spells out what G was given: the latent,
  the class (×100) and σ (−1 for a prior draw)."""
  def decode_conditional(p, z, labels, sigma):
    tag = -1.0 if sigma == float("inf") else sigma
    return z + 100.0 * labels[:, None] + tag + p["shift"]

  return tgt.Teacher(encode=lambda p, x: 2.0 * x, decode=lambda p, z: z,
                     label=lambda p, x: x[:, :CLASSES], latent_dim=4, pixel_range=(-1.0, 1.0),
                     decode_conditional=decode_conditional, num_classes=CLASSES,
                     condition_on_labeler=on_labeler)


def test_conditional_tgt_random_is_g_of_the_sigma_ball_under_each_examples_label():
  x = jax.random.normal(jax.random.key(0), (4, 6))
  y = jnp.array([3, 0, 4, 1])
  cfg = tgt.TGTConfig(method="tgt_random", sigma=0.25, num_samples=2)
  rng = jax.random.key(7)
  got = tgt.synthesize(rng, cfg, _conditional_teacher(), {"shift": 0.0}, None, None, x, labels=y)
  z = tgt.random_latents(rng, jnp.repeat(2.0 * x, 2, axis=0), 0.25)
  np.testing.assert_allclose(got, z + 100.0 * jnp.repeat(y, 2)[:, None] + 0.25, rtol=1e-6)
  on_labeler = tgt.synthesize(rng, cfg, _conditional_teacher(True), {"shift": 0.0}, None, None,
                              x, labels=y)
  want = jnp.repeat(jnp.argmax(x[:, :CLASSES], -1), 2)
  np.testing.assert_allclose(on_labeler, z + 100.0 * want[:, None] + 0.25, rtol=1e-6)
  with pytest.raises(ValueError, match="pass the batch's labels"):
    tgt.synthesize(rng, cfg, _conditional_teacher(), {"shift": 0.0}, None, None, x)


def test_conditional_tgt_prior_draws_classes_uniformly_from_pure_noise():
  n = 4000
  cfg = tgt.TGTConfig(method="tgt_prior")
  x = jnp.zeros((n, 6))
  rng = jax.random.key(3)
  got = tgt.synthesize(rng, cfg, _conditional_teacher(), {"shift": 0.0}, None, None, x,
                       labels=jnp.zeros(n, jnp.int32))   # the batch's labels play no part
  z = tgt.prior_latents(rng, n, 4)
  classes = (got - z + 1.0) / 100.0                      # σ tag −1: a prior draw
  np.testing.assert_allclose(classes, np.round(classes), atol=1e-3)
  counts = np.bincount(np.round(classes[:, 0]).astype(int), minlength=CLASSES)
  assert len(counts) == CLASSES and counts.min() > 0.9 * n / CLASSES, counts
  draws = tgt.conditioning_labels(jax.random.key(1), cfg, _conditional_teacher(), {}, x, None)
  assert np.array_equal(draws, tgt.conditioning_labels(jax.random.key(1), cfg,
                                                        _conditional_teacher(), {}, x, None))


@pytest.mark.parametrize("method", ["tgt_gradient", "tgt_gradient_input"])
def test_conditional_teacher_refuses_the_gradient_methods(method):
  cfg = tgt.TGTConfig(method=method)
  with pytest.raises(ValueError, match=f"{method}.*differentiate through the sampler"):
    tgt.synthesize(jax.random.key(0), cfg, _conditional_teacher(), {"shift": 0.0}, None, None,
                   jnp.zeros((2, 6)), labels=jnp.zeros(2, jnp.int32))


def test_teacher_targets_pass_the_batch_labels_to_a_conditional_g():
  batch = {"image": jnp.ones((2, 6)), "label": jnp.array([2, 4])}
  cfg = tgt.TGTConfig(method="tgt_random", sigma=0.0, alpha=0.0)
  _, x_syn, logits = tgt.teacher_targets(jax.random.key(0), cfg, _conditional_teacher(),
                                         {"shift": 0.0}, None, None, batch)
  np.testing.assert_allclose(x_syn[:, 0], [202.0, 402.0])
  assert logits.shape == (2, CLASSES)


def test_labels_change_nothing_for_an_unconditional_teacher(setup):
  teacher_fns, params, student_apply, student_params, x = setup
  cfg = tgt.TGTConfig(method="tgt_random", sigma=0.5)
  plain = tgt.synthesize(jax.random.key(4), cfg, teacher_fns, params, student_apply,
                         student_params, x)
  labelled = tgt.synthesize(jax.random.key(4), cfg, teacher_fns, params, student_apply,
                            student_params, x, labels=jnp.zeros(x.shape[0], jnp.int32))
  np.testing.assert_array_equal(plain, labelled)
