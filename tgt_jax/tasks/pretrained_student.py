"""The pretrained student on disk: job=pretrain writes it, a student fine-tunes from it.

A directory with `params/` (the whole classifier's variables, as a teacher's are
saved) and `pretrained.json` (the model name, the vocabulary's fingerprint, how it
was trained). tasks/pretrain.py writes it; a student with config.student.init_from
starts every parameter but its classification head from it (`load_into`).
"""

import json
import os

import jax
from etils import epath

from tgt_jax import checkpointing
from tgt_jax.engine import artifacts
from tgt_jax.teachers import generative

META_FILE = "pretrained.json"


def load_into(params, directory, model_name, vocabulary=None, mesh=None):
  """`params` with every entry but the classification head taken from the pretrained student."""
  path = epath.Path(directory, META_FILE)
  if not path.exists():
    raise FileNotFoundError(f"No pretrained student at {os.fspath(directory)!r} ({META_FILE} is "
                            "missing): run the pretrain job first "
                            "(configs/wordnet.py:job=pretrain).")
  meta = json.loads(path.read_text())
  if meta["model"] != model_name:
    raise ValueError(f"The pretrained student at {os.fspath(directory)!r} is a {meta['model']!r}; "
                     f"config.student.model is {model_name!r}.")
  if vocabulary is not None and (meta.get("vocabulary_fingerprint")
                                 != generative.vocabulary_fingerprint(vocabulary)):
    raise ValueError(f"The pretrained student at {os.fspath(directory)!r} was trained on another "
                     "vocabulary (config.data.vocab_size / data.dir differ from its run).")

  def mismatch(name, expected, found):
    raise ValueError(f"Pretrained parameters at {os.fspath(directory)!r} do not fit the student: "
                     f"parameter {name} expected shape {expected}, found {found}.")

  restored = artifacts.restore_replicated(checkpointing.absolute(directory) / generative.PARAMS_DIR,
                                        lambda: params, mesh, mismatch,
                                        checksums=meta.get(artifacts.CHECKSUMS),
                                        what="pretrained student")
  restored = jax.device_get(restored)
  return {"params": {name: (params["params"][name] if name == "head" else value)
                     for name, value in restored["params"].items()}}
