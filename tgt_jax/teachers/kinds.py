"""The registry of teacher kinds, and the one way any job gets its teacher.

A kind (config.teacher.kind) declares once how it validates its settings and how it
loads (training missing parts where it may); `teacher_for` is what a student, the
synthesis job and the teacher report call, and a LoadedTeacher is what each gets. A
new kind (a diffusion model, a published text encoder) is one entry of KINDS.

  ""           trained by tgt_jax (the digits, Fashion-MNIST and WordNet teachers)
  components   E, G and T from three part directories (BigBiGAN-shaped)
  pretrained   a published AutoencoderKL (E, G) with a BiT or timm labeler (T)
  diffusion    a class-conditional DiT and its AutoencoderKL (E, G) with a BiT/timm T
  latent_diffusion  a DiT trained by tgt_jax in the latent of a trained teacher's VAE
"""

import dataclasses
from typing import Callable

from tgt_jax.teachers import diffusion, generative, latent_diffusion, loading, training

LoadedTeacher = loading.LoadedTeacher


@dataclasses.dataclass(frozen=True)
class TeacherKind:
  describe: str
  validate: Callable         # config → None, a named error for a bad value
  # (config, workdir, source, mesh, parts, may_train) → LoadedTeacher; `parts` ⊆
  # ("generator", "labeler"): what the method reads; may_train=False for readers.
  load: Callable
  where: Callable            # (config, workdir) → the directory or file a results.json names


KINDS = {
    "": TeacherKind("trained by tgt_jax (VAE + labeler) in teacher.dir",
                    loading.validate_trained, loading.load_trained, training.teacher_dir),
    "components": TeacherKind("E, G and T from teacher.{encoder,generator,labeler}_dir",
                              loading.validate_components, loading.load_components,
                              lambda config, workdir: config.teacher.get("labeler_dir")),
    "pretrained": TeacherKind("a published AutoencoderKL (teacher.vae_dir) with a BiT/timm "
                              "labeler (teacher.labeler_file)", loading.validate_pretrained,
                              loading.load_pretrained,
                              lambda config, workdir: config.teacher.vae_dir),
    "diffusion": TeacherKind("a class-conditional DiT with its AutoencoderKL (teacher.dit_dir: "
                             "transformer/, vae/, scheduler/) and a BiT/timm labeler",
                             diffusion.validate, diffusion.load, diffusion.where),
    "latent_diffusion": TeacherKind("a DiT trained by tgt_jax (teacher.diffusion_dir) in the "
                                    "latent of the VAE in teacher.dir, with its labeler",
                                    latent_diffusion.validate, latent_diffusion.load,
                                    latent_diffusion.where),
}


def kind_of(config):
  name = config.teacher.get("kind", "")
  if name not in KINDS:
    known = ", ".join(f"{k!r} ({v.describe})" for k, v in KINDS.items())
    raise ValueError(f"Unknown teacher.kind {name!r}; choose one of {known}.")
  return KINDS[name]


def validate(config):
  """The teacher's settings, named when wrong, before anything is trained."""
  kind_of(config).validate(config)


def parts_needed(cfg):
  """The teacher parts a method calls: the labeler always; the generator only to make x'."""
  return generative.PARTS if cfg.uses_synthetic else ("labeler",)


def teacher_for(config, cfg, workdir, source, mesh, parts=None, may_train=True):
  """The LoadedTeacher a job with TGT config `cfg` needs (empty when it needs none).

  parts: the parts to load (None: those the method calls; a student reading x' from a
  cache needs ("labeler",)). eval_only reads only the teacher's JSON, for the report in
  results.json. may_train=False (readers: teacher_report) never trains or writes.
  """
  if not (cfg.alpha_eff > 0 or cfg.lam_eff > 0):
    return LoadedTeacher()
  kind = kind_of(config)
  if config.get("eval_only", False):
    where = kind.where(config, workdir)
    meta = (generative.read_meta(where) if kind is KINDS[""] and generative.exists(where)
            else None)
    return LoadedTeacher(where, meta)
  return kind.load(config, workdir, source, mesh, tuple(parts or parts_needed(cfg)), may_train)


def load_every_part(config, workdir, source, mesh):
  """Every part (E, G and T) of the configured teacher, read only (the teacher report)."""
  return kind_of(config).load(config, workdir, source, mesh, generative.PARTS, False)
