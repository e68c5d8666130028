"""tgt_jax: Teacher Guided Training (Zaheer, Rawat et al., 2022) in JAX/Flax."""

import setuptools

# Ranges are the ones we test with (see README); the upper bounds keep a fresh
# install from picking up a release with a breaking API change.
INSTALL_REQUIRES = [
    "jax>=0.10.2,<0.11",
    "jaxlib>=0.10.2,<0.11",
    "flax>=0.12.8,<0.13",
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
