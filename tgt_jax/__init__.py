"""Teacher Guided Training (TGT) in JAX/Flax."""
