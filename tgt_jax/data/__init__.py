"""The data layer: it yields data and knows nothing of jobs, methods or evaluation.

datasets.py (in-memory datasets by name), digits.py, wordnet.py, reverse_dictionary.py,
subsets.py (the student's labelled subsets), splits.py (stratified held-out rows), batches.py
(batch rows by (seed, step)), augment.py, sources.py (one interface over in-memory data and
TFDS), tfds_input.py (tf.data streams), tfds_random_access.py (ArrayRecord read by index:
exact resume), tfds_fashion_mnist.py (Fashion-MNIST built offline from Debian's files),
synthetic_cache.py (offline x' by index), subwords.py, wordpiece.py (HF tokenizers' WordPiece).
This file imports nothing, so no module here depends on the package as a whole.
"""
