"""The train state, the optimizer and durations: the same for a student and a teacher part."""

import math
from typing import Any

import flax
import jax
import optax

OPTIMIZERS = ("adam", "lamb", "sgd")


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any


def make_optimizer(ocfg, total_steps):
  """Warm-up then cosine decay to 0 over `total_steps`, for the optimizer ocfg.name."""
  check_optimizer(ocfg)
  schedule = optax.warmup_cosine_decay_schedule(
      0.0, ocfg.learning_rate, min(ocfg.warmup_steps, max(total_steps - 1, 0)), max(total_steps, 1))
  if ocfg.name == "adam":
    return optax.adamw(schedule, weight_decay=ocfg.weight_decay)
  if ocfg.name == "sgd":
    return optax.chain(optax.add_decayed_weights(ocfg.weight_decay),
                       optax.sgd(schedule, momentum=0.9, nesterov=True))
  return optax.lamb(schedule, weight_decay=ocfg.weight_decay)


def _finite(value):
  return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_optimizer(ocfg):
  """The optimizer's values, named when wrong (NaN and inf included: optax would train on)."""
  if ocfg.name not in OPTIMIZERS:
    raise ValueError(f"Unknown optimizer name {ocfg.name!r}; known: {list(OPTIMIZERS)}.")
  if not (_finite(ocfg.learning_rate) and ocfg.learning_rate > 0):
    raise ValueError(f"optimizer.learning_rate must be a finite number > 0, got "
                     f"{ocfg.learning_rate}.")
  for key in ("warmup_steps", "warmup_epochs", "weight_decay"):
    value = ocfg.get(key, 0)
    if not (_finite(value) and value >= 0):
      raise ValueError(f"optimizer.{key} must be a finite number >= 0, got {value!r}.")


def resolve_durations(config, num_examples):
  """A copy of config with num_epochs / optimizer.warmup_epochs turned into steps.

  Epochs count passes over the student's own training set (num_examples), so a
  long-tailed subset gets as many passes as the full set would.
  """
  config = config.copy_and_resolve_references()
  steps_per_epoch = max(1, num_examples // config.batch_size)
  if config.get("num_epochs"):
    config.num_train_steps = int(round(config.num_epochs * steps_per_epoch))
  if config.optimizer.get("warmup_epochs"):
    config.optimizer.warmup_steps = int(round(config.optimizer.warmup_epochs * steps_per_epoch))
  return config


def check_loop_settings(config):
  """A loop's durations, batch sizes and intervals, named when wrong."""
  if config.num_train_steps < 0:
    raise ValueError(f"num_train_steps must be >= 0, got {config.num_train_steps}.")
  if config.get("num_epochs") is not None and not (_finite(config.num_epochs)
                                                   and config.num_epochs >= 0):
    raise ValueError(f"num_epochs must be a finite number >= 0, got {config.num_epochs!r}.")
  for key in ("batch_size", "eval_batch_size"):
    if key in config and not (isinstance(config[key], int) and config[key] >= 1):
      raise ValueError(f"{key} must be a whole number >= 1 (a global batch, divisible by the "
                       f"device count), got {config[key]!r}.")
  for key in ("log_every", "eval_every", "checkpoint_every", "keep_checkpoints"):
    if key in config and config[key] < 1:
      raise ValueError(f"{key} must be >= 1, got {config[key]}.")
