"""The method a run config asks for, read the same way by every task.

`config.method` names the method and `config.tgt` holds its hyper-parameters
(configlib.tgt_defaults); `tgt.TGTConfig` checks them when it is built, so a
task calls this in its validate to refuse a bad value before any work.
"""

from tgt_jax import tgt


def tgt_config(config):
  """The run's tgt.TGTConfig (validates method, σ, η, k, ε, m, τ)."""
  return tgt.TGTConfig(method=config.method, **config.tgt.to_dict())
