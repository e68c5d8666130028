r"""The digits teacher job: trains the conv VAE (E, G) and the CNN labeler (T).

Both see the whole digits train split (1,259 images); the job saves them with
orbax to WORKDIR/teacher (or config.teacher.dir) and writes WORKDIR/results.json
with the labeler's balanced test accuracy, the VAE's reconstruction error and
KL, the labeler's accuracy on E→G reconstructions (the generator's quality
figure) and the fraction of labels kept after z = E(x) + σ·ε.

Command (2 CPU cores):
  python -m tgt_jax.main --config=configs/digits_teacher.py --workdir=/tmp/tgt_teacher
Student jobs then reuse it with --config.teacher.dir=/tmp/tgt_teacher/teacher.

Measured: see the teacher table in README.md.
"""

import ml_collections

from tgt_jax import configlib


def get_config(arg=None):
  arg = configlib.parse_arg(arg, runlocal=False)
  config = ml_collections.ConfigDict()
  config.job = "teacher"
  config.seed = 0
  config.data = ml_collections.ConfigDict(dict(name="digits"))
  config.teacher = configlib.digits_teacher(arg.runlocal)
  config.log_every = 500 if not arg.runlocal else 10
  return config
