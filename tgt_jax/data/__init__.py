"""The data layer: it yields data and knows nothing of jobs, methods or evaluation.

datasets.py (in-memory datasets by name), digits.py, wordnet.py, reverse_dictionary.py,
subsets.py (the student's labelled subsets), batches.py (batch rows by (seed, step)),
augment.py, sources.py (one interface over in-memory data and TFDS), tfds_*.py.
This file imports nothing, so no module here depends on the package as a whole.
"""
