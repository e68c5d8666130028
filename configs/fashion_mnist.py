r"""TGT student on Fashion-MNIST (real 28×28 images through TFDS, read by index).

The data are TFDS `fashion_mnist_debian` (tgt_jax/data/tfds_fashion_mnist.py): the first
job builds it as ArrayRecord into data.data_dir (default: TFDS's) from the Debian
package's idx files (apt-get install dataset-fashion-mnist; data.raw_dir to read
them elsewhere), checking their content; nothing is downloaded. Batches are drawn
by index as a function of (seed, step) (data/tfds_random_access.py), so a resumed run
replays exactly. 6,000 train images (600 per class, a fixed draw) are held out as
validation; the teacher trains on the other 54,000 and the student's labelled
subset comes from them; test (10,000) is for reporting only. The teacher (conv VAE
+ CNN labeler, as for digits) is trained by tgt_jax into WORKDIR/teacher.

Commands (2 CPU cores):
  python -m tgt_jax.main --config=configs/fashion_mnist.py:job=teacher --workdir=WORKDIR
  python -m tgt_jax.main --config=configs/fashion_mnist.py --workdir=WORKDIR   # trains the
      teacher into WORKDIR/teacher first if it is missing
  python -m tgt_jax.main --config=configs/fashion_mnist.py:job=teacher_report --workdir=WORKDIR2 \
      --config.teacher.dir=WORKDIR/teacher
:teacher=diffusion (teacher.kind='latent_diffusion', teachers/latent_diffusion.py): the same VAE
and labeler, with a class-conditional DiT trained here in the VAE's 32-d latent as G:
  python -m tgt_jax.main --config=configs/fashion_mnist.py:teacher=diffusion,job=diffusion \
      --workdir=WORKDIR2 --config.teacher.dir=WORKDIR/teacher      # → WORKDIR2/diffusion
  python -m tgt_jax.main --config=configs/fashion_mnist.py:teacher=diffusion,method=tgt_prior,job=synthesize \
      --workdir=WORKDIR3 --config.teacher.dir=WORKDIR/teacher --config.teacher.diffusion_dir=WORKDIR2/diffusion
  then the student with the same flags, job=student and --config.tgt_cache.dir=WORKDIR3/synthetic.
  Measured (2 CPU cores, shared): the DiT's job=diffusion (5,000 steps × 256) 54 min 35 s; the
  labeler's accuracy on its class-conditional samples 97.1%. python -m benchmarks.fashion_diffusion
  (3 seeds, N = 16, 10 DDIM steps, 400 student steps): diffusion − VAE teacher, cached
  tgt_random −2.6 (k10) / −2.0 (long tail), tgt_prior −1.9 / +0.1 points; unguided tgt_prior
  +0.2 at k10 (README "A diffusion teacher for Fashion-MNIST").
Variants: :runlocal (a few steps: the smoke test, tests/e2e/test_fashion_mnist.py);
  :method=ce|kd|kd_mixup|tgt_random|tgt_prior|tgt_gradient|tgt_gradient_input;
  --config.data.augment=none|shift|flip_shift; --config.data.labels_per_class=25;
  --config.data.labels_per_class=0 --config.data.imbalance=50 --config.data.head_count=500;
  --config.teacher.dir=DIR (a teacher trained once, shared by students);
  --config.data.data_dir=DIR (where the TFDS copy lives), --config.data.raw_dir=DIR.

On several hosts sharing data_dir, prepare it once first: python -c "from tgt_jax.data
import tfds_fashion_mnist as f; f.prepare('DATA_DIR')" (every process prepares what it
finds missing).

Measured (2 CPU cores shared with other jobs, jax 0.10.2):
  preparing the dataset from the Debian files: 15.4 s (8.7 s in a test session), 70,000
  PNG records, 42 MB; reading and decoding a batch of 64 by index: 14 ms (128: 23 ms);
  a job's start-up pass over the train labels: ~1.3 s.
  :runlocal teacher, student and teacher report on the real data: 125 s in all (the
  slow test tests/e2e/test_fashion_mnist.py); a tgt_random student step at batch 64 with
  shift augmentation: ~5 steps/s on 8 fake devices; a killed student resumed
  bit-for-bit (tests/e2e/test_recovery.py).
  The teacher job with these defaults (2,000 VAE + 3,000 labeler steps at batch 64, 32-d
  latent), from an empty workdir: 42 min 47 s (2 cores shared with other jobs). Its
  job=teacher_report on all 10,000 test images: labeler 92.4% (target 92%), labeler on E→G
  reconstructions 86.3% (target 85%), reconstruction MSE 0.0092, label kept at
  σ = 0.25 / 0.5 / 1 / 2: 88.1 / 82.9 / 67.8 / 41.0%.
  Students: python -m benchmarks.fashion_mnist --teacher_dir=WORKDIR/teacher (every method,
  3 seeds, 5/10/50 labels per class and a long tail; figures in README "Fashion-MNIST
  benchmark" and benchmarks/results/fashion_mnist/table.md). Measured there (3 seeds, 400
  steps × 64, balanced test accuracy): at 10 labels per class ce 69.5%, kd 74.8%, tgt_random
  83.7%, tgt_gradient_input 86.1%, kd_transfer (all train images unlabelled) 86.3%; long tail
  ρ=100, tail classes: ce 56.8%, tgt_prior 90.3%.
"""

import ml_collections

from tgt_jax import configlib

TEACHERS = ("vae", "diffusion")


def get_config(arg=None):
  arg = configlib.parse_arg(arg, runlocal=False, method="tgt_random", job="student",
                            teacher="vae")
  if arg.teacher not in TEACHERS:
    raise ValueError(f"Unknown teacher {arg.teacher!r} in {arg!r}; choose one of {TEACHERS}.")
  config = ml_collections.ConfigDict()
  config.job = arg.job                # student | teacher | diffusion | teacher_report | synthesize
  config.seed = 0
  config.data = ml_collections.ConfigDict(dict(
      name="fashion_mnist_debian",
      data_dir="",              # "" → $TFDS_DATA_DIR or ~/tensorflow_datasets
      raw_dir="",               # "" → /usr/share/datasets/fashion-mnist (Debian's idx files)
      reader="random_access",   # ArrayRecord, read by index: batches by (seed, step)
      train_split="train",
      eval_splits={"test": "test"},
      validation_size=6000,     # stratified, fixed draw from train, never trained on
      image_size=28, channels=1, pixel_range=(0.0, 1.0),
      labels_per_class=10,      # 0 → use `imbalance` (or the whole pool if both are 0)
      imbalance=0.0,            # ρ: head/tail class-size ratio of a long-tailed subset
      head_count=0,             # long-tail head class size; 0 → the smallest class's size
      num_labels=0,             # or this many labels in proportion to the class sizes
      index_file="",            # or the examples (tfds_id) listed in this file
      augment="none",           # none | shift | flip_shift (in the step; teacher and student)
  ))
  config.student = ml_collections.ConfigDict(dict(model="cnn_small", dtype=""))
  config.teacher = configlib.digits_teacher(arg.runlocal)
  config.teacher.update(dict(latent_dim=32, generator_steps=2_000, labeler_steps=3_000,
                             batch_size=64, kl_warmup_steps=300))    # measured: see above
  if arg.teacher == "diffusion":
    config.teacher.update(configlib.latent_diffusion_teacher(arg.runlocal))
  config.method = arg.method
  config.tgt = configlib.tgt_defaults()
  config.tgt_cache = configlib.cache_defaults()   # offline x' (job=synthesize), read by index

  config.batch_size = 64          # global; must divide by the device count
  config.eval_batch_size = 256
  config.num_train_steps = 2000
  config.optimizer = configlib.digits_optimizer()

  config.log_every = 100
  config.eval_every = 500
  config.checkpoint_every = 500
  config.keep_checkpoints = 3
  config.grid_examples = 16
  config.eval_only = False
  config.eval_step = 0
  config.report_split = ""        # job=teacher_report: "" = test
  config.report_examples = 10_000

  if arg.runlocal:
    config.teacher.update(dict(generator_steps=10, labeler_steps=10, kl_warmup_steps=5,
                               batch_size=32))
    config.data.eval_splits = {"test": "test[:1000]"}
    config.num_train_steps = 6
    config.log_every = config.eval_every = config.checkpoint_every = 3
    config.report_examples = 256
  return config
