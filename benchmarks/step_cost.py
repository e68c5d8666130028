r"""Step cost of every method side by side : time, FLOPs, teacher passes, input.

Command (repo root; 2 CPU cores take a few minutes with the defaults):
  python -m benchmarks.step_cost --json_out=/tmp/step_cost.json
  (digits; the ImageNet-shaped step: python -m benchmarks.imagenet_step)
  (or python benchmarks/step_cost.py; flags: --steps=50 --warmup=5 --batch_size=64
   --student=cnn_small --methods=ce,kd,... --num_samples=1 --gradient_steps=1 --teacher_dir=DIR)

tgt_random_cached is tgt_random's step fed x' and T(x') with the batch, as a student reading
job=synthesize's cache runs it (its input-wait column is not measured: the cache's reads are
host work the timed loop does not model).

Every method's jitted step (`classification.make_train_step`) runs in this one process on
the same batch, student initialisation and key, so the rows differ only by method.
The teacher defaults to random-init parameters (`--teacher_dir` loads a trained
one): a step's cost does not depend on the teacher's quality.

Columns:
  ms/step         median wall time of one step over --steps timed steps after --warmup,
                  each timed up to `jax.block_until_ready` of its outputs.
  examples/s      real examples per second: batch_size / median step time.
  GFLOPs/step     FLOPs XLA's cost analysis reports for the compiled step, summed over the
                  mesh's devices (XLA reports the per-device SPMD program).
  time/FLOP ÷ kd  (seconds / FLOP) over kd's: about 1 means the method's extra time is its
                  extra FLOPs and no more; above 1, overhead beyond the arithmetic.
  teacher fwd/ex  teacher forward passes per real example per student update (rule below).
  input wait %    share of a real training loop's wall time lost to building input: the loop
                  of classification.run (batch rows → numpy indexing → to_global → step,
                  steps dispatched asynchronously) against the same loop fed one prebuilt
                  batch, 1 − T(prebuilt) / T(real), each the fastest of 3 alternating runs.

Teacher passes, counted from the method (m = num_samples, k = gradient_steps; each
module E, G or T applied to one example counts 1): T(x) on the real example when
α > 0; when λ > 0, E(x) once (not tgt_prior), then G and T on its m synthetic samples;
each ascent step of tgt_gradient adds m passes of G and of T (a forward and backward
through G, T and the student), each of tgt_gradient_input m passes of T. So with α, λ > 0:
ce 0, kd 1, kd_mixup and kd_transfer 1+m (no E or G), tgt_random 2+2m, tgt_prior 1+2m,
tgt_gradient 2+2m(k+1), tgt_gradient_input 2+m(k+2). Backward passes through the teacher are reported apart (JSON) and show in the FLOPs.
"""

import argparse
import json
import os
import statistics
import sys
import time
import types

if __package__ in (None, ""):     # python benchmarks/step_cost.py
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable=g-import-not-at-top,wrong-import-position
import jax
import jax.numpy as jnp
import numpy as np

from tgt_jax import configlib, models, sharding, tgt
from tgt_jax.teachers import generative
from tgt_jax.data import datasets
from tgt_jax.engine import state as state_lib
from tgt_jax.tasks import classification
from tgt_jax.data import subsets

CACHED = "tgt_random_cached"    # tgt_random's step fed x' and T(x') from a cache (job=synthesize)
# As configs/digits.py: the schedule's length and the real loop's labelled subset.
TOTAL_STEPS = 2000
LABELS_PER_CLASS = 5
SEED = 0


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
  p.add_argument("--steps", type=int, default=50, help="timed steps per method")
  p.add_argument("--warmup", type=int, default=5, help="untimed steps first (compilation)")
  p.add_argument("--batch_size", type=int, default=64, help="global; divisible by devices")
  p.add_argument("--student", default="cnn_small", choices=sorted(models.CLASSIFIERS))
  p.add_argument("--methods", default=",".join(tgt.METHODS), help="comma list")
  p.add_argument("--num_samples", type=int, default=1, help="m synthetic samples per real one")
  p.add_argument("--gradient_steps", type=int, default=1, help="k ascent steps")
  p.add_argument("--teacher_dir", default="", help="a trained teacher (default: random init)")
  p.add_argument("--json_out", default="", help="also write the table here as JSON")
  args = p.parse_args(argv)
  args.methods = [m for m in args.methods.split(",") if m]
  unknown = [m for m in args.methods if m not in tgt.METHODS + (CACHED,)]
  if unknown or not args.methods:
    p.error(f"--methods: unknown {unknown}; choose from {list(tgt.METHODS) + [CACHED]}.")
  if args.steps < 1 or args.warmup < 1:
    p.error("--steps and --warmup must be >= 1 (the first call compiles).")
  return args


def teacher_passes(cfg):
  """Teacher passes per real example per update, by module (docstring's rule)."""
  m, k = cfg.num_samples, cfg.steps
  n = {"E": 0, "G": 0, "T": int(cfg.alpha_eff > 0), "backward_G": 0, "backward_T": 0}
  if cfg.lam_eff > 0:
    n["T"] += m
  if cfg.lam_eff > 0 and cfg.needs_generator:
    n["E"] = int(cfg.method != "tgt_prior")
    n["G"] += m
    if cfg.method == "tgt_gradient":
      n["G"] += k * m
      n["T"] += k * m
      n["backward_G"] = n["backward_T"] = k * m
    elif cfg.method == "tgt_gradient_input":
      n["T"] += k * m
      n["backward_T"] = k * m
  n["forward"] = n["E"] + n["G"] + n["T"]
  return n


def compiled_flops(compiled):
  """FLOPs of a compiled program on one device (cost_analysis: a dict, or a list of them)."""
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else None
  return float((analysis or {}).get("flops", float("nan")))


def xla_flops(step, *args):
  """FLOPs of the jitted step, compiled for `args`, on one device."""
  return compiled_flops(step.lower(*args).compile())


def time_steps(step, state, tparams, batch, rng, warmup, steps):
  """Per-step wall times (s) after `warmup` calls; each call fed the state it returned last."""
  for _ in range(warmup):
    state, _ = step(state, tparams, batch, rng)
  jax.block_until_ready(state)
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    state, terms = step(state, tparams, batch, rng)
    jax.block_until_ready((state, terms))
    times.append(time.perf_counter() - start)
  return state, times


def input_wait(step, cfg, state, tparams, labelled, unlabelled, batch_size, mesh, rng, steps,
               repeats=3):
  """Share of the real loop's wall time lost to input: 1 − T(one prebuilt batch) / T(real input).

  The loop is classification.run's (batch rows → numpy indexing → to_global →
  step, dispatched asynchronously, so input building may overlap the previous step),
  timed up to `block_until_ready` of its last state. The control loop feeds one
  prebuilt batch instead. They alternate `repeats` times and each keeps its fastest,
  to shed interference from other processes; noise below 0 reads as 0.
  """
  loop_config = types.SimpleNamespace(batch_size=batch_size, seed=SEED)

  def make_batch(i):
    return sharding.to_global(mesh, classification.batch_at(loop_config, cfg,
                                                           labelled, unlabelled, i))

  fixed = jax.block_until_ready(make_batch(0))

  def loop(state, real):
    jax.block_until_ready(state)
    start = time.perf_counter()
    for i in range(steps):
      state, _ = step(state, tparams, make_batch(i) if real else fixed, rng)
    jax.block_until_ready(state)
    return state, time.perf_counter() - start

  best = {False: float("inf"), True: float("inf")}
  for _ in range(repeats):
    for real in (False, True):
      state, seconds = loop(state, real)
      best[real] = min(best[real], seconds)
  return state, max(0.0, 1.0 - best[False] / best[True])


def load_teacher(teacher_dir, dataset, mesh):
  if teacher_dir:
    return generative.load(teacher_dir, dataset.image_shape, dataset.num_classes, mesh=mesh)
  t = configlib.digits_teacher()
  meta = dict(generator=t.generator, labeler=t.labeler, latent_dim=int(t.latent_dim),
              image_shape=list(dataset.image_shape), num_classes=int(dataset.num_classes),
              pixel_range=list(dataset.pixel_range))
  return meta, sharding.replicate(mesh, generative.init_params(meta, jax.random.key(0)))


def measure(args):
  """One row per method: the figures of the table (see the module docstring)."""
  mesh = sharding.make_mesh()
  sharding.check_batch_size(args.batch_size, mesh)
  dataset = datasets.load("digits")
  train_split = dataset.splits["train"]
  counts = subsets.student_counts(train_split.labels, dataset.num_classes, LABELS_PER_CLASS)
  labelled = train_split.take(subsets.select_rows(train_split.labels, counts, SEED))
  meta, tparams = load_teacher(args.teacher_dir, dataset, mesh)
  teacher_fns = generative.as_functions(meta)

  student = models.classifier(args.student, dataset.num_classes)
  tx = state_lib.make_optimizer(configlib.digits_optimizer(), TOTAL_STEPS)
  params = jax.device_get(student.init(jax.random.key(SEED),
                                       jnp.zeros((1, *dataset.image_shape), jnp.float32)))
  first_batch = types.SimpleNamespace(batch_size=args.batch_size, seed=SEED)
  rng = jax.random.key(1)
  devices = int(mesh.devices.size)

  results = []
  for method in args.methods:
    cached = method == CACHED
    cfg = tgt.TGTConfig(method="tgt_random" if cached else method, steps=args.gradient_steps,
                        num_samples=args.num_samples)
    step = classification.make_train_step(student.apply, tx, cfg, teacher_fns, mesh)
    host_batch = classification.batch_at(first_batch, cfg, train_split, train_split, 0)
    if cached:       # what tgt_cache.dir adds to a batch: m samples and their logits per row
      x_syn = np.repeat(host_batch["image"], args.num_samples, axis=0)
      host_batch.update(synthetic_image=x_syn, synthetic_teacher_logits=np.zeros(
          (len(x_syn), dataset.num_classes), np.float32))
    batch = sharding.to_global(mesh, host_batch)
    # A fresh host copy each time: the step donates (invalidates) the state it is given.
    state = sharding.replicate(mesh, state_lib.TrainState(np.int32(0), params, tx.init(params)))
    flops = xla_flops(step, state, tparams, batch, rng) * devices
    state, times = time_steps(step, state, tparams, batch, rng, args.warmup, args.steps)
    if cached:       # the cache's reads are host work this loop does not model
      wait = float("nan")
    else:
      state, wait = input_wait(step, cfg, state, tparams, labelled, train_split,
                               args.batch_size, mesh, rng, args.steps)
    median = statistics.median(times)
    passes = teacher_passes(cfg)
    if cached:
      passes.update(E=0, G=0, T=1, forward=1)
    results.append({
        "method": method, "ms_per_step": 1e3 * median, "ms_min": 1e3 * min(times),
        "ms_max": 1e3 * max(times), "examples_per_s": args.batch_size / median,
        "flops": flops, "teacher_forward_passes_per_example": passes["forward"],
        "teacher_passes_by_module": passes, "input_wait_fraction": wait})
    del state
  kd = next((r for r in results if r["method"] == "kd"), None)
  for r in results:
    r["time_per_flop_vs_kd"] = (
        (r["ms_per_step"] / r["flops"]) / (kd["ms_per_step"] / kd["flops"]) if kd else float("nan"))
  return results


def header(args):
  device = jax.devices()[0]
  teacher_note = (f"trained teacher from {args.teacher_dir}" if args.teacher_dir else
                  "random-init teacher (step cost does not depend on teacher quality)")
  return [f"device: {device.device_kind} ({device.platform}) × {jax.device_count()}",
          f"jax {jax.__version__}; student {args.student}; batch {args.batch_size}; "
          f"m={args.num_samples}; k={args.gradient_steps}; {args.warmup} warm-up + "
          f"{args.steps} timed steps per method; {teacher_note}"]


def format_table(results):
  rows = [("method", "ms/step", "examples/s", "GFLOPs/step", "time/FLOP ÷ kd", "teacher fwd/ex",
           "input wait %")]
  for r in results:
    rows.append((r["method"], f"{r['ms_per_step']:.2f}", f"{r['examples_per_s']:.0f}",
                 f"{r['flops'] / 1e9:.4f}", f"{r['time_per_flop_vs_kd']:.2f}",
                 str(r["teacher_forward_passes_per_example"]),
                 f"{100 * r['input_wait_fraction']:.1f}"))
  widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
  return "\n".join(" | ".join(c.rjust(w) if i else c.ljust(w)
                              for i, (c, w) in enumerate(zip(row, widths))) for row in rows)


def main(argv=None):
  """Measures, prints the table (and writes --json_out); returns the rows.

  The ImageNet-shaped step has its own command: python -m benchmarks.imagenet_step.
  """
  argv = sys.argv[1:] if argv is None else list(argv)
  args = parse_args(argv)
  head = header(args)
  print("\n".join(head), flush=True)
  results = measure(args)
  print(format_table(results), flush=True)
  if args.json_out:
    with open(args.json_out, "w", encoding="utf-8") as f:
      json.dump({"header": head, "args": vars(args), "rows": results}, f, indent=2)
  return results


if __name__ == "__main__":
  main()
