"""What every training in tgt_jax shares, and nothing task-specific.

state.py   the train state, the optimizer, durations in steps or epochs
loop.py    THE training loop: log, evaluate, sample, checkpoint, resume, preempt, finite checks
artifacts.py  trained things on disk: params then JSON, replicated restore, results.json

The engine never imports a task, a teacher or a job (tests/test_layers.py checks it).
"""
