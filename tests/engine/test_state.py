"""engine/state.py: optimizer and loop settings are named when wrong (NaN and inf included),
epochs become steps of the student's own set, and the schedule warms up then decays to 0."""

import math

import ml_collections
import numpy as np
import optax
import pytest

from tgt_jax.engine import state


def _optimizer(**overrides):
  return ml_collections.ConfigDict({**dict(name="adam", learning_rate=1e-3, warmup_steps=2,
                                           weight_decay=0.0), **overrides})


@pytest.mark.parametrize("overrides, match", [
    (dict(name="adagrad"), r"Unknown optimizer name 'adagrad'; known: \['adam', 'lamb', 'sgd'\]"),
    (dict(learning_rate=0.0), "learning_rate must be a finite number > 0, got 0.0"),
    (dict(learning_rate=math.nan), "learning_rate must be a finite number > 0, got nan"),
    (dict(warmup_steps=-1), "optimizer.warmup_steps must be a finite number >= 0, got -1"),
    (dict(weight_decay=math.inf), "optimizer.weight_decay must be .* got inf"),
    (dict(warmup_epochs=True), "optimizer.warmup_epochs must be .* got True"),
])
def test_bad_optimizer_values_are_named(overrides, match):
  with pytest.raises(ValueError, match=match):
    state.check_optimizer(_optimizer(**overrides))


@pytest.mark.parametrize("name", state.OPTIMIZERS)
def test_every_optimizer_warms_up_then_decays_to_zero(name):
  params = {"w": np.ones(3, np.float32)}
  optimizer = state.make_optimizer(_optimizer(name=name), total_steps=4)
  opt_state = optimizer.init(params)
  rates = []
  for _ in range(5):
    updates, opt_state = optimizer.update({"w": np.ones(3, np.float32)}, opt_state, params)
    rates.append(float(np.abs(updates["w"]).max()))
  assert rates[0] == 0.0 and rates[2] > rates[1] > 0 and rates[4] == 0.0, rates
  assert isinstance(optimizer, optax.GradientTransformation)


def _loop_config(**overrides):
  return ml_collections.ConfigDict({**dict(
      num_train_steps=10, num_epochs=None, batch_size=8, eval_batch_size=16, log_every=1,
      eval_every=5, checkpoint_every=5, keep_checkpoints=2, optimizer=_optimizer()),
      **overrides})


@pytest.mark.parametrize("overrides, match", [
    (dict(num_train_steps=-1), "num_train_steps must be >= 0, got -1"),
    (dict(num_epochs=math.nan), "num_epochs must be a finite number >= 0, got nan"),
    (dict(batch_size=0), "batch_size must be a whole number >= 1 .* got 0"),
    (dict(eval_batch_size=2.5), "eval_batch_size must be a whole number >= 1 .* got 2.5"),
    (dict(checkpoint_every=0), "checkpoint_every must be >= 1, got 0"),
])
def test_bad_loop_settings_are_named(overrides, match):
  with pytest.raises(ValueError, match=match):
    state.check_loop_settings(_loop_config(**overrides))


def test_epochs_are_passes_over_the_students_own_examples():
  config = _loop_config(num_epochs=2.5)
  config.optimizer.warmup_epochs = 0.5
  resolved = state.resolve_durations(config, num_examples=100)     # 12 steps per epoch
  assert resolved.num_train_steps == 30 and resolved.optimizer.warmup_steps == 6
  assert config.num_train_steps == 10                              # a copy: the input is kept
  assert state.resolve_durations(_loop_config(num_epochs=1), 3).num_train_steps == 1
