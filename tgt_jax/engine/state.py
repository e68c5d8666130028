"""The train state, the optimizer and durations: the same for a student and a teacher part."""

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


def check_optimizer(ocfg):
  if ocfg.name not in OPTIMIZERS:
    raise ValueError(f"Unknown optimizer name {ocfg.name!r}; known: {list(OPTIMIZERS)}.")
  if not ocfg.learning_rate > 0:
    raise ValueError(f"optimizer.learning_rate must be > 0, got {ocfg.learning_rate}.")


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
  """A loop's durations and intervals, named when wrong."""
  if config.num_train_steps < 0:
    raise ValueError(f"num_train_steps must be >= 0, got {config.num_train_steps}.")
  for key in ("log_every", "eval_every", "checkpoint_every", "keep_checkpoints"):
    if key in config and config[key] < 1:
      raise ValueError(f"{key} must be >= 1, got {config[key]}.")
