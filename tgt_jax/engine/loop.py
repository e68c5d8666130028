"""THE training loop: every training in tgt_jax (students, teacher parts, pretraining) runs here.

A training is a run directory (checkpoints/, metrics.jsonl, tensorboard/), a
jitted `step_fn(state, batch) -> (state, terms)`, and batches that are a function
of the step they start from. The loop restores the newest intact checkpoint,
steps to `total_steps`, and on the way logs (a progress line with steps/s and
ETA; every term to metrics.jsonl and TensorBoard), probes and evaluates, saves
every `checkpoint_every` steps and at the end, never saves a state whose terms
are not finite, and on SIGTERM or a first Ctrl-C saves the current step and raises
`checkpointing.Preempted`. So every training resumes, logs and stops alike.
"""

import dataclasses
import logging
from typing import Callable, Optional

import jax
import numpy as np
from etils import epath

from tgt_jax import checkpointing, metrics, sharding


@dataclasses.dataclass(frozen=True)
class Schedule:
  """When the loop stops, logs, evaluates and saves (steps; eval_every=0: never)."""
  total_steps: int
  log_every: int
  checkpoint_every: int
  eval_every: int = 0

  @classmethod
  def of(cls, config):
    """The schedule of a student config (num_train_steps, log/checkpoint/eval_every)."""
    return cls(config.num_train_steps, config.log_every, config.checkpoint_every,
               config.eval_every)


def checkpoints_of(run_dir, keep=3, read_only=False, label="student"):
  """The Checkpointer of a run directory; read_only (eval_only) never writes or moves there;
  `label` says in log lines what is restored (a student, a teacher part, ...)."""
  return checkpointing.Checkpointer(epath.Path(run_dir) / "checkpoints", keep,
                                    read_only=read_only, label=label)


def newest_step_on_disk(run_dir):
  """The highest step directory in run_dir/checkpoints (0 if none), read without orbax, so
  a job can check it before doing (or writing) anything."""
  directory = epath.Path(run_dir) / "checkpoints"
  if not directory.exists():
    return 0
  return max((int(p.name) for p in directory.iterdir() if p.name.isdigit()), default=0)


def refuse_shorter_run(run_dir, total_steps, name="student"):
  """num_train_steps below a checkpoint that exists would report that checkpoint's step under
  the smaller total ("step 30/10"): refused by name before any work."""
  newest = newest_step_on_disk(run_dir)
  if newest > total_steps:
    raise ValueError(
        f"num_train_steps={total_steps} is below step {newest} of the newest {name} checkpoint "
        f"in {epath.Path(run_dir) / 'checkpoints'}: give num_train_steps >= {newest} to resume "
        "(or extend) that run, or eval_only=True to evaluate it; nothing was changed.")


def restore_or_start(ckpt, state, eval_only=False, eval_step=0):
  """The state to start from: checkpoint eval_step (eval_only), else the newest intact
  checkpoint, else `state` itself (an eval_only run needs a checkpoint)."""
  if eval_only and eval_step:
    return ckpt.restore(state, eval_step)[0]
  restored = ckpt.restore_latest_intact(state, may_move=not eval_only)
  if restored is None and eval_only:
    raise FileNotFoundError(f"eval_only: no student checkpoint in {ckpt.directory}.")
  return restored[0] if restored else state


def train(state, step_fn, batches, ckpt, writer, schedule, mesh, *, name="",
          probe: Optional[Callable] = None, evaluate: Optional[Callable] = None, meta=None):
  """Steps from state.step to schedule.total_steps; returns the final (saved) state.

  batches(start_step) → iterator of this process's rows of each global batch.
  probe(state, batch, step) → scalars, on logging steps, before the update (it
  sees the state the step explores with; it writes its own samples).
  evaluate(params) → scalars (already prefixed, e.g. "validation/..."), every
  eval_every steps but the last (the job evaluates the final state itself).
  """
  first_step, total = int(state.step), schedule.total_steps
  if first_step > total:
    raise ValueError(
        f"num_train_steps={total} is below step {first_step} of the newest {name or 'student'} "
        f"checkpoint in {ckpt.directory}: give num_train_steps >= {first_step} to resume (or "
        f"extend) that run, or eval_only=True to evaluate it; nothing was changed.")
  if first_step == total:
    return state
  label = f"{name} " if name else ""
  progress = metrics.Progress(total, first_step)
  stream = batches(first_step)
  in_flight = None      # the previous step's terms: at most 2 steps queued (see below)
  with checkpointing.PreemptionWatch() as preemption:
    for step in range(first_step, total):
      done = step + 1
      batch = sharding.to_global(mesh, next(stream))
      is_log_step = done % schedule.log_every == 0 or done == total
      is_save_step = done % schedule.checkpoint_every == 0 or done == total
      probed = probe(state, batch, done) if is_log_step and probe is not None else {}
      state, terms = step_fn(state, batch)
      # Bounded asynchronous dispatch: wait for the step before this one. Hundreds of queued
      # steps whose all-reduces span several CPU devices deadlock XLA's CPU runtime on a
      # small host (a rendezvous times out and aborts); two in flight still hide dispatch.
      if in_flight is not None:
        jax.block_until_ready(in_flight)
      in_flight = terms
      preempted = preemption.reached(done)
      if is_log_step or is_save_step or preempted:   # never save what was not checked finite
        scalars = {k: float(v) for k, v in jax.device_get(terms).items()}
        check_finite(scalars, done, ckpt, name)
      if is_log_step:
        scalars.update({k: float(v) for k, v in jax.device_get(probed).items()})
        timing = progress.update(done)
        writer.scalars(done, {**{f"train/{k}": v for k, v in scalars.items()}, **timing})
        logging.info("%s%s", label, metrics.format_progress(done, total, timing, scalars))
      if (evaluate is not None and schedule.eval_every and done % schedule.eval_every == 0
          and done < total):
        evaluated = evaluate(state.params)
        writer.scalars(done, evaluated)
        logging.info("%sstep %d/%d | %s", label, done, total,
                     " ".join(f"{k}={v:.4g}" for k, v in evaluated.items()))
      if is_save_step or preempted:
        ckpt.save(done, state, {"step": done, **(meta or {})})
      if preempted:
        ckpt.wait()
        raise preemption.preempted(done, ckpt.directory, label)
  ckpt.wait()
  return state


def check_finite(scalars, step, ckpt, name=""):
  bad = sorted(k for k, v in scalars.items() if not np.isfinite(v))
  if bad:
    ckpt.wait()
    what = f"{name} " if name else ""
    raise FloatingPointError(
        f"Non-finite {what}loss terms {bad} at step {step} "
        f"({', '.join(f'{k}={scalars[k]}' for k in bad)}); nothing was saved from this step. "
        f"Last good checkpoint: step {ckpt.latest_step()} in {ckpt.directory}.")
