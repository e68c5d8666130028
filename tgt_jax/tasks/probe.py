"""Exploration diagnostics of logging steps (docs/design.md, "Exploration").

The probe reproduces the train step's own x' (same key, same augmentation) and
reports the discrepancy before and after exploration and the teacher's
confidence on x'. It is a separate jitted function so the other steps pay
nothing for it. Its samples become an image grid (real | decoded | explored)
or, for text, a samples file with the labeler's category of each explored gloss.
"""

import jax
import jax.numpy as jnp
import numpy as np

from tgt_jax import losses, metrics, sharding, tgt
from tgt_jax.data import augment
from tgt_jax.teachers import text as text_teacher


def make_probe(student_apply, cfg, teacher_fns, mesh, num_examples, augment_name="none",
               fill=0.0):
  """(state, teacher_params, batch, rng) → (stats, samples) for the step at state.step."""

  def probe(state, teacher_params, batch, rng):
    rng = jax.random.fold_in(rng, state.step)
    batch = augment.augment_batch(augment_name, jax.random.fold_in(rng, augment.STREAM), batch,
                                  fill)
    x = batch["image"]
    x_syn = tgt.synthesize(rng, cfg, teacher_fns, teacher_params, student_apply, state.params, x,
                           batch.get("transfer"), batch.get("label"))
    x_rec = teacher_fns.decode(teacher_params, teacher_fns.encode(teacher_params, x))

    def discrepancy(inputs):
      return losses.kl_divergence(teacher_fns.label(teacher_params, inputs),
                                  student_apply(state.params, inputs), cfg.temperature)

    t_syn = teacher_fns.label(teacher_params, x_syn)
    stats = {"discrepancy_before_exploration": jnp.mean(discrepancy(x_rec)),
             "discrepancy_after_exploration": jnp.mean(discrepancy(x_syn)),
             "teacher_entropy_synthetic": jnp.mean(losses.entropy(t_syn)),
             "teacher_confidence_synthetic": jnp.mean(jnp.max(jax.nn.softmax(t_syn), -1)),
             "teacher_entropy_real": jnp.mean(losses.entropy(teacher_fns.label(teacher_params, x)))}
    n, m = num_examples, cfg.num_samples
    samples = {"real": x[:n], "decoded": x_rec[:n], "explored": x_syn[:n * m],
               "explored_label": jnp.argmax(t_syn[:n * m], -1), "label": batch["label"][:n]}
    return stats, samples

  repl = sharding.replicated(mesh)
  return jax.jit(probe, in_shardings=(repl, repl, sharding.batch_sharded(mesh), repl),
                 out_shardings=repl)


def write_samples(writer, step, samples, source, num_samples):
  """Images: a real | decoded | explored grid. Text: a samples file (real | decoded | explored)."""
  if source.vocabulary is None:
    lo, hi = source.pixel_range
    rows = [samples["real"], samples["decoded"], samples["explored"][::num_samples]]
    writer.image(step, "real_decoded_explored",
                 metrics.image_grid([(np.asarray(r) - lo) / (hi - lo) for r in rows]))
    return
  rows = []
  for i in range(len(samples["real"])):
    picks = range(i * num_samples, (i + 1) * num_samples)
    rows.append({"real": samples["real"][i], "decoded": samples["decoded"][i],
                 "label": int(samples["label"][i]),
                 "explored": [(samples["explored"][j], samples["explored_label"][j])
                              for j in picks]})
  writer.text(step, "real_decoded_explored",
              text_teacher.format_samples(source.vocabulary, source.class_names, rows))
