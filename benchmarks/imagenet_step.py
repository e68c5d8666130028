r"""The ImageNet-shaped TGT step measured part by part: where a step's FLOPs and time go.

Command (repo root; 2 CPU cores: about 30 minutes with the defaults):
  python -m benchmarks.imagenet_step --preset=imagenet \
    --json_out=benchmarks/results/step_cost_imagenet.json
  (flags: --batch_size=2 --labeler=R152x2|R50x1 --teacher_dtypes=float32,bfloat16
   --methods=ce,kd,... --steps=2 --warmup=1 --size=full|tiny)

The parts (benchmarks/imagenet_shaped.py, random weights at their published sizes):
a ResNet-50 student in bf16, sd-vae-ft-mse's E and G, BiT-M R152x2 as T, 224 px.
Every method's step is classification.make_train_step, the function the job runs.

tgt_random_cached is tgt_random's step fed x' and T(x') with the batch, as a student reading
job=synthesize's cache runs it (T(x) on the real batch stays in the step).

Per teacher dtype, two tables:
  parts    XLA's GFLOPs per example of the student's forward+backward and of E, G, T
           alone (each compiled by itself).
  methods  per step: XLA's GFLOPs; the split into student (forward+backward on x and,
           with λ > 0, on x'), E, G, T (forward passes outside the ascent) and the rest
           (the ascent's forward+backward passes, the optimizer, the loss) = step − parts;
           the student's share; median ms/step over --steps after --warmup; time per
           FLOP ÷ kd's (1 means the extra time is the extra FLOPs); XLA's peak memory
           estimate (arguments + outputs + temporaries − aliased); compile seconds.
"""

import argparse
import json
import statistics

import jax

from benchmarks import imagenet_shaped, step_cost
from tgt_jax import tgt

CACHED = "tgt_random_cached"     # tgt_random's student step on x' and T(x') from a cache
# Every method but kd_transfer, which reads a transfer set this step has not; then CACHED.
DEFAULT_METHODS = tuple(m for m in tgt.METHODS if m != "kd_transfer") + (CACHED,)


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
  p.add_argument("--preset", default="imagenet", choices=["imagenet"])
  p.add_argument("--batch_size", type=int, default=2, help="global; divisible by devices")
  p.add_argument("--labeler", default="R152x2", choices=sorted(imagenet_shaped.LABELERS))
  p.add_argument("--teacher_dtypes", default="float32,bfloat16", help="comma list")
  p.add_argument("--methods", default=",".join(DEFAULT_METHODS), help="comma list")
  p.add_argument("--steps", type=int, default=2, help="timed steps per method")
  p.add_argument("--warmup", type=int, default=1, help="untimed steps first")
  p.add_argument("--size", default="full", choices=sorted(imagenet_shaped.SIZES))
  p.add_argument("--json_out", default="")
  args = p.parse_args(argv)
  args.methods = [m for m in args.methods.split(",") if m]
  args.teacher_dtypes = [d for d in args.teacher_dtypes.split(",") if d]
  unknown = [m for m in args.methods if m not in DEFAULT_METHODS]
  if unknown or not args.methods:
    p.error(f"--methods: unknown or unsupported here {unknown} (kd_transfer reads a transfer "
            f"set, which this step has not); choose from {list(DEFAULT_METHODS)}.")
  bad = [d for d in args.teacher_dtypes if d not in ("float32", "bfloat16")]
  if bad or not args.teacher_dtypes:
    p.error(f"--teacher_dtypes: {bad}; choose from float32, bfloat16.")
  if "kd" not in args.methods:
    p.error("--methods must include kd: time per FLOP is reported relative to kd's.")
  if args.steps < 1 or args.warmup < 1:
    p.error("--steps and --warmup must be >= 1 (the first call compiles).")
  return args


def forward_passes(cfg):
  """Passes per real example outside the ascent: student fwd+bwd, E, G, T. step_cost's rule
  counts the ascent's passes too, once per backward pass through G or T."""
  n = step_cost.teacher_passes(cfg)
  return {"student": 1 + (cfg.num_samples if cfg.lam_eff > 0 else 0), "E": n["E"],
          "G": n["G"] - n["backward_G"], "T": n["T"] - n["backward_T"]}


def measure_parts(setup):
  """{part: GFLOPs per example} of each part compiled alone."""
  out = {}
  for name, (fn, args) in imagenet_shaped.part_functions(setup).items():
    _, flops, _, _ = imagenet_shaped.compiled_figures(fn, args)
    out[name] = flops / setup.batch["image"].shape[0] / 1e9
  return out


def measure_method(setup, method, parts, steps, warmup):
  cached = method == CACHED
  cfg, step = imagenet_shaped.train_step(setup, "tgt_random" if cached else method)
  batch = imagenet_shaped.cached_batch(setup) if cached else setup.batch
  state = imagenet_shaped.fresh_state(setup)
  rng = jax.random.key(1)
  args = (state, setup.teacher_params, batch, rng)
  compiled, flops, compile_s, memory = imagenet_shaped.compiled_figures(step, args)
  _, times = step_cost.time_steps(compiled, *args, warmup, steps)
  batch_size = setup.batch["image"].shape[0]
  passes = forward_passes(cfg)
  if cached:                  # x' and T(x') arrive with the batch: T(x) is the only teacher pass
    passes.update(E=0, G=0, T=1)
  split = {"student": passes["student"] * parts["student_fwd_bwd"],
           **{k: passes[k] * parts[k] for k in ("E", "G", "T")}}
  per_example = flops / batch_size / 1e9
  split["rest"] = per_example - sum(split.values())
  return {"method": method, "gflops_per_example": per_example,
          "gflops_by_part_per_example": split,
          "student_share": split["student"] / per_example,
          "ms_per_step": 1e3 * statistics.median(times), "ms_all": [1e3 * t for t in times],
          "compile_s": compile_s, "memory": memory, "passes": passes}


def measure(args):
  results = []
  for dtype in args.teacher_dtypes:
    setup = imagenet_shaped.build(args.batch_size, args.size, args.labeler, dtype)
    parts = measure_parts(setup)
    print(f"teacher {dtype}: parts (GFLOPs/example) "
          + ", ".join(f"{k} {v:.1f}" for k, v in parts.items()), flush=True)
    rows = []
    for method in args.methods:
      rows.append(measure_method(setup, method, parts, args.steps, args.warmup))
      print(format_row(rows[-1]), flush=True)
    kd = next(r for r in rows if r["method"] == "kd")
    for r in rows:
      r["time_per_flop_vs_kd"] = ((r["ms_per_step"] / r["gflops_per_example"])
                                  / (kd["ms_per_step"] / kd["gflops_per_example"]))
    results.append({"teacher_dtype": dtype, "parts_gflops_per_example": parts, "rows": rows})
    del setup
  return results


def format_row(r):
  split = r["gflops_by_part_per_example"]
  return (f"  {r['method']:<19} {r['gflops_per_example']:8.1f} GF/ex  "
          + " ".join(f"{k} {v:.1f}" for k, v in split.items())
          + f"  student {100 * r['student_share']:.0f}%  {r['ms_per_step']:.0f} ms/step  "
          f"compile {r['compile_s']:.0f} s  "
          f"peak {r['memory'].get('peak_estimate_bytes', 0) / 2**30:.1f} GiB")


def format_table(result):
  head = ("method", "GFLOPs/ex", "student", "E", "G", "T", "ascent+rest", "student %",
          "ms/step", "time/FLOP ÷ kd", "XLA peak GiB", "compile s")
  rows = [head]
  for r in result["rows"]:
    s = r["gflops_by_part_per_example"]
    rows.append((r["method"], f"{r['gflops_per_example']:.4g}", f"{s['student']:.4g}",
                 f"{s['E']:.4g}", f"{s['G']:.4g}", f"{s['T']:.4g}", f"{s['rest']:.3g}",
                 f"{100 * r['student_share']:.1f}", f"{r['ms_per_step']:.0f}",
                 f"{r['time_per_flop_vs_kd']:.2f}",
                 f"{r['memory'].get('peak_estimate_bytes', 0) / 2**30:.2f}",
                 f"{r['compile_s']:.0f}"))
  lines = ["| " + " | ".join(row) + " |" for row in rows]
  lines.insert(1, "|" + "---|" * len(head))
  return "\n".join(lines)


def main(argv=None):
  args = parse_args(argv)
  device = jax.devices()[0]
  header = [f"device: {device.device_kind} ({device.platform}) × {jax.device_count()}; "
            f"jax {jax.__version__}; size {args.size}; batch {args.batch_size}; labeler "
            f"{args.labeler}; {args.warmup} warm-up + {args.steps} timed steps"]
  print(header[0], flush=True)
  results = measure(args)
  for result in results:
    print(f"\nteacher {result['teacher_dtype']}:\n{format_table(result)}", flush=True)
  if args.json_out:
    with open(args.json_out, "w", encoding="utf-8") as f:
      json.dump({"header": header, "args": vars(args), "results": results}, f, indent=2)
  return results
