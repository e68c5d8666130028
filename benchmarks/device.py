r"""Device benchmark: images/s and MFU of the ImageNet-shaped TGT step, one command, ≤ 5 minutes.

Command (on a GPU or TPU VM, repo root):
  python -m benchmarks.device --json_out=/tmp/device.json
  (flags: --batch_size=128 --methods=kd,tgt_random,tgt_gradient --steps=5 --budget_s=270
   --size=full|tiny --matmul_size=8192)
CPU smoke run (what the tests run): --size=tiny --batch_size=8 --matmul_size=256.

In one process: first the device's bf16 matmul rate, measured (a jitted chain of
n×n @ n×n products, 2n³ FLOPs each, best of 3 timings): the peak MFU is counted
against, since a datasheet's figure is not what this software stack reaches. Then
per method the ImageNet-shaped step (benchmarks/imagenet_shaped.py: ResNet-50 student,
sd-vae-ft-mse E and G, BiT-M R152x2 T, 224 px, everything bf16) at --batch_size:
  images/s   real images per second (batch / median step time)
  MFU        XLA's FLOPs per step / step time / (measured matmul rate × devices)
Methods that would start after --budget_s are skipped and listed as such.
"""

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp

from benchmarks import imagenet_shaped, step_cost
from tgt_jax import tgt

DEFAULT_METHODS = ("kd", "tgt_random", "tgt_gradient")


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
  p.add_argument("--batch_size", type=int, default=128, help="global; divisible by devices")
  p.add_argument("--methods", default=",".join(DEFAULT_METHODS), help="comma list")
  p.add_argument("--steps", type=int, default=5, help="timed steps per method")
  p.add_argument("--budget_s", type=float, default=270.0, help="start no method after this")
  p.add_argument("--size", default="full", choices=sorted(imagenet_shaped.SIZES))
  p.add_argument("--labeler", default="R152x2", choices=sorted(imagenet_shaped.LABELERS))
  p.add_argument("--matmul_size", type=int, default=8192)
  p.add_argument("--json_out", default="")
  args = p.parse_args(argv)
  args.methods = [m for m in args.methods.split(",") if m]
  unknown = [m for m in args.methods if m not in tgt.METHODS or m == "kd_transfer"]
  if unknown or not args.methods:
    p.error(f"--methods: unknown or unsupported here {unknown}.")
  if args.steps < 1 or args.matmul_size < 1:
    p.error("--steps and --matmul_size must be >= 1.")
  return args


def matmul_peak(n, chain=8, repeats=3):
  """bf16 FLOP/s of one device, measured: `chain` dependent n×n products in one jit."""
  device = jax.devices()[0]
  keys = jax.random.split(jax.random.key(0), 2)
  a = jax.device_put(jax.random.normal(keys[0], (n, n), jnp.bfloat16), device)
  b = jax.device_put(jax.random.normal(keys[1], (n, n), jnp.bfloat16) / n ** 0.5, device)

  @jax.jit
  def products(a, b):
    return jax.lax.fori_loop(0, chain, lambda _, x: (x @ b).astype(jnp.bfloat16), a)

  jax.block_until_ready(products(a, b))
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(products(a, b))
    best = min(best, time.perf_counter() - start)
  return chain * 2.0 * n ** 3 / best


def measure(args):
  start = time.perf_counter()
  peak = matmul_peak(args.matmul_size)
  devices = jax.device_count()
  setup, rows, skipped = None, [], []
  for method in args.methods:
    if time.perf_counter() - start > args.budget_s:
      skipped.append(method)
      continue
    setup = setup or imagenet_shaped.build(args.batch_size, args.size, args.labeler, "bfloat16")
    _, step = imagenet_shaped.train_step(setup, method)
    state = imagenet_shaped.fresh_state(setup)
    rng = jax.random.key(1)
    args_ = (state, setup.teacher_params, setup.batch, rng)
    compiled, flops, compile_s, memory = imagenet_shaped.compiled_figures(step, args_)
    _, times = step_cost.time_steps(compiled, *args_, 1, args.steps)     # 1 warm-up step
    median = statistics.median(times)
    rows.append({"method": method, "images_per_s": args.batch_size / median,
                 "ms_per_step": 1e3 * median, "gflops_per_step": flops / 1e9,
                 "mfu": flops / median / (peak * devices), "compile_s": compile_s,
                 "peak_memory_estimate_bytes": memory.get("peak_estimate_bytes")})
    print(f"{method:<19} {rows[-1]['images_per_s']:9.1f} images/s  MFU "
          f"{100 * rows[-1]['mfu']:5.1f}%  ({rows[-1]['ms_per_step']:.1f} ms/step, compile "
          f"{compile_s:.0f} s)", flush=True)
  return {"matmul_bf16_flops_per_s": peak, "devices": devices, "rows": rows,
          "skipped": skipped, "wall_s": time.perf_counter() - start}


def main(argv=None):
  args = parse_args(argv)
  device = jax.devices()[0]
  header = (f"device: {device.device_kind} ({device.platform}) × {jax.device_count()}; jax "
            f"{jax.__version__}; size {args.size}; batch {args.batch_size}; bf16 everywhere")
  print(header, flush=True)
  result = measure(args)
  print(f"measured bf16 matmul rate: {result['matmul_bf16_flops_per_s'] / 1e12:.2f} TFLOP/s per "
        f"device; skipped (over --budget_s): {result['skipped'] or 'none'}; "
        f"{result['wall_s']:.0f} s in all", flush=True)
  if args.json_out:
    with open(args.json_out, "w", encoding="utf-8") as f:
      json.dump({"header": header, "args": vars(args), **result}, f, indent=2)
  return result


if __name__ == "__main__":
  main()
