"""The ImageNet-shaped TGT step: its parts at their published sizes, random weights, one builder.

Shared by benchmarks/imagenet_step.py (FLOPs and time by part, CPU) and
benchmarks/device.py (images/s and MFU on an accelerator). A step's cost does not
depend on the weights' values, so every part is random-initialised:
  student  ResNet-50 (tgt_jax's, GroupNorm), bfloat16 compute, 1000 classes
  E, G     sd-vae-ft-mse's architecture (diffusers config: block_out_channels
           128/256/512/512, 2 layers per block, 4 latent channels, 32 groups):
           a 224 px image ↔ a 28×28×4 latent
  T        BiT-M R152x2 (big_vision's distillation teacher) or R50x1
`size="tiny"` keeps every code path at 32 px with small widths, for tests.
"""

import dataclasses
import time
from typing import Any

import jax
import ml_collections
import jax.numpy as jnp
import numpy as np

from benchmarks import step_cost
from tgt_jax import models, sharding, tgt
from tgt_jax.engine import state as state_lib
from tgt_jax.models import autoencoder_kl, bit
from tgt_jax.tasks import classification
from tgt_jax.teachers import pretrained

NUM_CLASSES = 1000
PIXEL_RANGE = (-1.0, 1.0)
SD_VAE = autoencoder_kl.AutoencoderKLConfig(
    block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
    norm_num_groups=32, scaling_factor=0.18215, sample_size=256)
LABELERS = {"R152x2": dict(stage_sizes=bit.DEPTHS[152], width=2),
            "R50x1": dict(stage_sizes=bit.DEPTHS[50], width=1)}
SIZES = {
    "full": dict(image=224, student="resnet50", vae=SD_VAE, groups=32),
    "tiny": dict(image=32, student="resnet_tiny", groups=4,
                 vae=autoencoder_kl.AutoencoderKLConfig(
                     block_out_channels=(16, 32), layers_per_block=1, latent_channels=4,
                     norm_num_groups=8, sample_size=32)),
}
TINY_LABELER = dict(stage_sizes=(1, 1), width=1 / 8)


@dataclasses.dataclass
class Setup:
  """Everything a step needs, built once: modules, parameters on the mesh, one batch."""
  mesh: Any
  student: Any
  tx: Any
  teacher: tgt.Teacher
  teacher_params: Any
  vae: Any
  labeler: Any
  student_params: Any          # host copy: every method's state starts from it
  batch: dict
  image_shape: tuple


def build(batch_size, size="full", labeler="R152x2", teacher_dtype="bfloat16",
          student_dtype="bfloat16", seed=0, mesh=None):
  """The ImageNet-shaped parts and one batch of random images in [-1, 1] with labels."""
  if size not in SIZES:
    raise ValueError(f"Unknown size {size!r}; choose one of {sorted(SIZES)}.")
  if labeler not in LABELERS:
    raise ValueError(f"Unknown labeler {labeler!r}; choose one of {sorted(LABELERS)}.")
  spec = SIZES[size]
  mesh = mesh if mesh is not None else sharding.make_mesh()
  sharding.check_batch_size(batch_size, mesh)
  dtype = jnp.dtype(teacher_dtype)
  image_shape = (spec["image"], spec["image"], 3)
  keys = jax.random.split(jax.random.key(seed), 4)
  x = jnp.zeros((1, *image_shape), jnp.float32)

  vae = autoencoder_kl.AutoencoderKL(spec["vae"], dtype)
  labeler_fields = TINY_LABELER if size == "tiny" else LABELERS[labeler]
  labeler_module = bit.BiTResNetV2(NUM_CLASSES, groups=spec["groups"], dtype=dtype,
                                   **labeler_fields)
  teacher_params = {"generator": jax.jit(vae.init)(keys[0], x),
                    "labeler": jax.jit(labeler_module.init)(keys[1], x)}
  functions = pretrained.teacher_functions(vae, labeler_module, image_shape, PIXEL_RANGE,
                                           labeler_resolution=spec["image"])
  student = models.classifier(spec["student"], NUM_CLASSES, student_dtype)
  tx = state_lib.make_optimizer(ml_collections.ConfigDict(dict(
      name="sgd", learning_rate=0.1, warmup_steps=0, weight_decay=1e-4)), 1000)
  student_params = jax.device_get(jax.jit(student.init)(keys[2], x))
  rng = np.random.default_rng(seed)
  batch = {"image": rng.uniform(-1, 1, (batch_size, *image_shape)).astype(np.float32),
           "label": rng.integers(0, NUM_CLASSES, batch_size).astype(np.int32)}
  return Setup(mesh, student, tx, functions, sharding.replicate(mesh, teacher_params), vae,
               labeler_module, student_params, sharding.to_global(mesh, batch), image_shape)


def cached_batch(setup, num_samples=1, seed=1):
  """The batch with x' and T(x') as a student reading a synthetic cache gets them."""
  rng = np.random.default_rng(seed)
  n = setup.batch["image"].shape[0] * num_samples
  extra = {"synthetic_image": rng.uniform(-1, 1, (n, *setup.image_shape)).astype(np.float32),
           "synthetic_teacher_logits": rng.normal(size=(n, NUM_CLASSES)).astype(np.float32)}
  return {**setup.batch, **sharding.to_global(setup.mesh, extra)}


def fresh_state(setup):
  """A step-0 train state on the mesh (each method gets its own: the step donates it)."""
  params = setup.student_params
  return sharding.replicate(setup.mesh, state_lib.TrainState(
      np.int32(0), params, setup.tx.init(params)))


def train_step(setup, method, num_samples=1, gradient_steps=1):
  """classification's jitted step for `method`: the same function the student job runs."""
  cfg = tgt.TGTConfig(method=method, steps=gradient_steps, num_samples=num_samples)
  return cfg, classification.make_train_step(setup.student.apply, setup.tx, cfg, setup.teacher,
                                             setup.mesh)


def part_functions(setup):
  """{part: (jitted function, its arguments)}: each part of a step alone, for its FLOPs.

  student_fwd_bwd is the gradient of CE through S on the real batch (one student
  pass of any method's loss); E, G and T are the teacher's forward passes.
  """
  t, p, x = setup.teacher, setup.teacher_params, setup.batch["image"]
  z = jax.jit(t.encode)(p, x)

  def student_fwd_bwd(params, images, labels):
    def loss(params_):
      logits = setup.student.apply(params_, images)
      return jnp.mean(-jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], -1))
    return jax.grad(loss)(params)

  student_params = sharding.replicate(setup.mesh, setup.student_params)
  return {"student_fwd_bwd": (jax.jit(student_fwd_bwd),
                              (student_params, x, setup.batch["label"])),
          "E": (jax.jit(t.encode), (p, x)),
          "G": (jax.jit(t.decode), (p, z)),
          "T": (jax.jit(t.label), (p, x))}


def compiled_figures(fn, args):
  """(compiled, FLOPs summed over devices, compile seconds, XLA's memory figures in bytes)."""
  start = time.perf_counter()
  compiled = fn.lower(*args).compile()
  seconds = time.perf_counter() - start
  flops = step_cost.compiled_flops(compiled)
  memory = {}
  stats = compiled.memory_analysis()
  if stats is not None:
    for name in ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes",
                 "alias_size_in_bytes", "generated_code_size_in_bytes"):
      memory[name] = int(getattr(stats, name, 0) or 0)
    memory["peak_estimate_bytes"] = (memory["argument_size_in_bytes"]
                                     + memory["output_size_in_bytes"]
                                     + memory["temp_size_in_bytes"]
                                     - memory["alias_size_in_bytes"])
  devices = len(jax.devices())
  return compiled, flops * devices, seconds, memory
