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

Then what one synthetic sample of teacher.kind='diffusion' costs (teachers/diffusion.py):
k DDIM steps, each a guided pass on the doubled batch, then the sd-vae decoder at 256 px
(and, for tgt_random, the encoder of the real image). XLA's cost analysis counts a
while loop's body once whatever its trip count (a lax.scan of k steps reports one step),
so the chain is measured unrolled (k = 2, against k × one step + the decoder) and the
table is composed from the measured parts: k = 5 is tgt.sigma = 0.5 with the default 25
steps, k = 25 a tgt_prior sample (the σ ↔ t table is in teachers/diffusion.py).
"""

import jax
import jax.numpy as jnp

from benchmarks import imagenet_shaped
from tgt_jax.models import autoencoder_kl, diffusion, dit

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


def _flops(fn, *args):
  cost = jax.jit(fn).lower(*args).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return cost["flops"]


def _abstract(shape, dtype=jnp.float32):
  return jax.ShapeDtypeStruct(shape, dtype)


def chain_flops(config, steps, guidance=1.5, decode=True, num_steps=25):
  """XLA FLOPs of one sample's `steps` guided DDIM steps, unrolled (no scan), and the decoder."""
  module = dit.DiT(config)
  schedule = diffusion.Schedule()
  timesteps = [int(t) for t in schedule.timesteps(num_steps)[-steps:]]
  side = config.sample_size
  vae = autoencoder_kl.AutoencoderKL(imagenet_shaped.SD_VAE)

  def chain(params, vae_params, x, labels):
    noise_fn = dit.noise_fn(module, params)
    for t in timesteps:
      eps = diffusion.guided_noise(noise_fn, x, t, labels, guidance, config.null_class)
      x = diffusion.ddim_step(schedule, num_steps, eps, t, x)[0]
    return vae.apply(vae_params, x, method=vae.decode_latent) if decode else x

  return _flops(chain, {"params": dit.abstract_params(module)},
                {"params": autoencoder_kl.abstract_params(vae)},
                _abstract((1, side, side, config.in_channels)), _abstract((1,), jnp.int32))


def vae_flops(config, image=256):
  """XLA FLOPs of the sd-vae decoder (latent → image) and encoder (image → latent), one sample."""
  vae = autoencoder_kl.AutoencoderKL(imagenet_shaped.SD_VAE)
  params = {"params": autoencoder_kl.abstract_params(vae)}
  latent = _abstract((1, config.sample_size, config.sample_size, config.in_channels))
  decoder = _flops(lambda p, z: vae.apply(p, z, method=vae.decode_latent), params, latent)
  encoder = _flops(lambda p, x: vae.apply(p, x, method=vae.encode_latent), params,
                   _abstract((1, image, image, 3)))
  return decoder, encoder


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

  print("\nOne synthetic sample of teacher.kind='diffusion' (guidance 1.5: doubled batch)")
  step = chain_flops(config, 1, decode=False)
  decoder, encoder = vae_flops(config)
  two_steps = chain_flops(config, 2)
  print(f"XLA, one guided DDIM step (2 passes):  {step / 1e9:8.1f} GFLOPs")
  print(f"XLA, sd-vae decoder 32²×4 → 256²:      {decoder / 1e9:8.1f} GFLOPs")
  print(f"XLA, sd-vae encoder 256² → 32²×4:      {encoder / 1e9:8.1f} GFLOPs")
  print(f"XLA, 2 steps + decoder, unrolled:      {two_steps / 1e9:8.1f} GFLOPs "
        f"(2 × step + decoder = {(2 * step + decoder) / 1e9:.1f})")
  print("k steps | tgt_prior: k·step + decoder | tgt_random: + encoder | "
        "the DiT alone by the paper (k·2 passes·118.6 G MACs·2)")
  for k in (1, 2, 5, 7, 11, 25):
    prior = k * step + decoder
    print(f"{k:7d} | {prior / 1e9:12.1f} GFLOPs | {(prior + encoder) / 1e9:12.1f} GFLOPs | "
          f"{k * 2 * PUBLISHED_GFLOPS * 2:8.1f} GFLOPs")


if __name__ == "__main__":
  main()
