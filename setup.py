"""tgt_jax: Teacher Guided Training (Zaheer, Rawat et al., 2022) in JAX/Flax."""

import setuptools

# Ranges are the ones we test with (see README); the upper bounds keep a fresh
# install from picking up a release with a breaking API change. The other packages'
# newest releases are the same on Python 3.11 and 3.13.
# jax 0.11+ and flax 0.12.9+ require Python >= 3.12: on 3.11 the newest are jax 0.10.2 and
# flax 0.12.8; on 3.12+ it is jax 0.12 with flax 0.12.12 (tested on 3.13 by .ci/py313).
OLD_PYTHON = "python_version < '3.12'"
NEW_PYTHON = "python_version >= '3.12'"
INSTALL_REQUIRES = [
    f"jax>=0.10.2,<0.11; {OLD_PYTHON}",
    f"jaxlib>=0.10.2,<0.11; {OLD_PYTHON}",
    f"flax>=0.12.8,<0.13; {OLD_PYTHON}",
    f"jax>=0.12.0.1,<0.13; {NEW_PYTHON}",
    f"jaxlib>=0.12.0.1,<0.13; {NEW_PYTHON}",
    f"flax>=0.12.12,<0.13; {NEW_PYTHON}",
    "optax>=0.2.8,<0.3",
    "orbax-checkpoint>=0.12.8,<0.13",
    "tensorflow-datasets>=4.9.10,<4.10",
    # tensorflow-datasets does not install TensorFlow; tf.data, tf.summary
    # (TensorBoard) and PNG encoding need it.
    "tensorflow-cpu>=2.21,<2.22",
    # tf.summary needs TensorBoard installed; tensorflow-cpu 2.21 no longer pulls it in.
    "tensorboard>=2.21,<2.22",
    "ml-collections>=1.1.0,<1.2",
    "chex>=0.1.92,<0.2",
    "absl-py>=2.5.1,<3",
    # The local default runs on scikit-learn's bundled copy of UCI digits.
    "scikit-learn>=1.9.1,<1.10",
    "numpy>=2.0",
    # Published teacher weights (diffusers AutoencoderKL, timm) are read with numpy, no torch.
    "safetensors>=0.4",
    # Published text encoders (all-MiniLM-L6-v2) ship their tokeniser as tokenizer.json;
    # HF tokenizers runs it as published, without torch (tgt_jax.data.wordpiece).
    "tokenizers>=0.23.3,<0.24",
]

setuptools.setup(
    name="tgt_jax",
    version="0.1.0",
    description="Teacher Guided Training: distillation with a generative teacher, in JAX/Flax.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=setuptools.find_packages(include=["tgt_jax", "tgt_jax.*"]),
    install_requires=INSTALL_REQUIRES,
    # matplotlib draws the sample-efficiency benchmark's plot (its smoke test runs in CI).
    # pytest-timeout turns a hung test into one failure with every thread's stack.
    extras_require={"test": ["pytest>=8", "pytest-timeout>=2.3", "pytest-xdist>=3",
                             "matplotlib>=3.11,<3.12"],
                    "bench": ["matplotlib>=3.11,<3.12"]},
)
