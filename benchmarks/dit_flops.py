r"""XLA's FLOP count for one DiT-XL/2 forward pass at 256 px, beside the published 118.6 GFLOPs.

Command (repo root; compiles on abstract shapes: no 675M parameters are materialised):
  python -m benchmarks.dit_flops > benchmarks/results/dit_flops.txt

The module is tgt_jax.models.dit with DiTConfig()'s defaults (DiT-XL/2: 28 layers, width
1152, 16 heads, patch 2, 32×32×4 latent, learned σ, 1,000 classes). XLA counts a
multiply-add as 2 FLOPs; the DiT paper's "Gflops" count it as 1, so the comparable figure
is half of XLA's. The parameter count is diffusers' layout: every block holds its own copy
of the timestep/label embedder (2.8M each), so 27 copies more than the paper's 675M.
Also printed: the same count from the layer shapes by hand (matmuls
only), and the doubled batch of one classifier-free-guided sampling step.
"""

import jax
import jax.numpy as jnp

from tgt_jax.models import dit

PUBLISHED_GFLOPS = 118.6        # DiT-XL/2, 256×256 (Peebles & Xie 2023, Table 4)


def xla_flops(config, batch, dtype=jnp.float32):
  module = dit.DiT(config, dtype)
  side = config.sample_size
  x = jax.ShapeDtypeStruct((batch, side, side, config.in_channels), jnp.float32)
  t = jax.ShapeDtypeStruct((batch,), jnp.int32)
  variables = {"params": dit.abstract_params(module)}
  compiled = jax.jit(module.apply).lower(variables, x, t, t).compile()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return cost["flops"]


def matmul_macs(config):
  """Multiply-adds of the matmuls and the patch conv of one example, from the shapes."""
  d, n = config.width, (config.sample_size // config.patch_size) ** 2
  p2 = config.patch_size ** 2
  per_block = (n * d * 3 * d          # q, k, v
               + 2 * n * n * d        # q·kᵀ and weights·v
               + n * d * d            # to_out
               + 2 * n * d * 4 * d    # MLP
               + d * 6 * d            # AdaLN-zero modulation
               + dit.TIME_FEATURES * d + d * d)   # the block's own timestep MLP
  return (n * p2 * config.in_channels * d + config.num_layers * per_block
          + d * 2 * d + n * d * p2 * config.out_channels)


def main():
  config = dit.DiTConfig()
  params = sum(x.size for x in jax.tree.leaves(dit.abstract_params(dit.DiT(config))))
  one = xla_flops(config, 1)
  print(f"DiT-XL/2 256px: {params / 1e6:.1f}M parameters, {config.num_layers} layers, "
        f"width {config.width}, {(config.sample_size // config.patch_size) ** 2} tokens")
  print(f"XLA cost analysis, batch 1:            {one / 1e9:8.1f} GFLOPs "
        f"(= {one / 2e9:.1f} G multiply-adds)")
  print(f"matmul multiply-adds from the shapes:  {matmul_macs(config) / 1e9:8.1f} G")
  print(f"published (multiply-adds):             {PUBLISHED_GFLOPS:8.1f} G")
  two = xla_flops(config, 2)
  print(f"XLA, batch 2 (one guided step):        {two / 1e9:8.1f} GFLOPs")


if __name__ == "__main__":
  main()
