"""The one dispatcher: every job is declared here once, with its checks and its run.

  student            the TGT student for classification (tasks/classification.py)
  teacher            a generative teacher: VAE + labeler (teachers/training.py)
  diffusion          a DiT trained in a trained teacher's latent (teachers/latent_diffusion.py)
  teacher_report     any image teacher's figures and pictures, nothing trained (teachers/report.py)
  synthesize         offline x' and T(x') for tgt_random / tgt_prior students (tasks/synthesize.py)
  pretrain           masked-token pretraining of the text student (tasks/pretrain.py)
  retrieval_teacher  the dual-encoder retrieval teacher (tasks/retrieval.py)
  retrieval          the TGT student for retrieval (tasks/retrieval.py)

`run` checks the whole config before any work, then runs the job in its workdir,
which belongs to one run: it is locked while the job runs, and the job's identity
directory (`Job.identity_dir`: the directory whose checkpoints it writes, the workdir
for the students, the teacher's or the pretrained student's directory for those jobs)
records the run's identity at the first start and refuses a later start of another
run (workdir.py). Only main.py imports this module.
"""

import dataclasses
from typing import Callable

import jax
from jax.experimental import multihost_utils

from tgt_jax import models, workdir as workdir_lib
from tgt_jax.tasks import classification, pretrain, retrieval, synthesize
from tgt_jax.teachers import kinds, latent_diffusion, report, training
from tgt_jax.teachers import retrieval as retrieval_teacher


@dataclasses.dataclass(frozen=True)
class Job:
  validate: Callable          # config → None, raising a named error for a bad value
  run: Callable               # (config, workdir) → results
  # (config, workdir) → where the run's identity is recorded: the directory it checkpoints in
  identity_dir: Callable = lambda config, workdir: workdir


def _validate_pretrain(config):
  models.check_classifier(config.student.model)


JOBS = {
    "student": Job(classification.validate, classification.run),
    "teacher": Job(kinds.validate, training.run_teacher_job, training.teacher_dir),
    "diffusion": Job(latent_diffusion.validate, latent_diffusion.run_job,
                     latent_diffusion.diffusion_dir),
    "teacher_report": Job(report.validate, report.run),
    "synthesize": Job(synthesize.validate, synthesize.run),
    "pretrain": Job(_validate_pretrain, pretrain.run_pretrain_job, pretrain.pretrained_dir),
    "retrieval_teacher": Job(retrieval.validate, retrieval.run_teacher,
                             retrieval_teacher.directory_of),
    "retrieval": Job(retrieval.validate, retrieval.run_student),
}


def validate(config):
  """The job's name and every value it reads, named when wrong, before any work."""
  name = config.get("job", "student")
  if name not in JOBS:
    raise ValueError(f"Unknown job {name!r}; choose one of {sorted(JOBS)}.")
  seed = config.get("seed", 0)
  if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**31:
    raise ValueError(f"seed must be a whole number in [0, 2**31), got {seed!r}: it seeds numpy "
                     "and JAX, which take no negative seeds.")
  JOBS[name].validate(config)
  return JOBS[name]


def run(config, workdir):
  """Runs the job in `config` in `workdir` (resuming what is there); returns its results."""
  job = validate(config)
  name = config.get("job", "student")
  workdir_lib.prepare(workdir)
  with workdir_lib.WorkdirLock(workdir):
    identity_dir = job.identity_dir(config, workdir)
    eval_only = bool(config.get("eval_only", False))
    if not eval_only:
      workdir_lib.prepare(identity_dir)
    records = workdir_lib.IdentityRecords(identity_dir, workdir)
    workdir_lib.record_or_check(identity_dir, workdir_lib.identity(config), f"{name} run",
                                write=not eval_only)
    try:
      results = job.run(config, workdir)
    except Exception:
      # A start refused inside the job (a value only the data can check, a teacher made with
      # other settings) must not leave its identity behind: the corrected rerun would be
      # refused against it. Kept once a checkpoint exists: then it protects that run.
      records.forget_new_if_no_checkpoint()
      raise
  if jax.process_count() > 1:     # nobody exits while another process still needs it
    multihost_utils.sync_global_devices("job done")
  return results

