"""Evaluation metrics: classification.py (balanced accuracy, macro-F1, head/medium/tail) and
retrieval.py (exact ranks over every document: recall@k, MRR)."""
