"""configlib.py: the config string argument takes its defaults' types and names unknown keys;
load() applies dotted overrides as --config.KEY=VALUE would."""

import math

import pytest

from tgt_jax import configlib


def test_parse_arg_types_values_by_their_default():
  arg = configlib.parse_arg("runlocal,method=kd,steps=7,sigma=0.5,flip=no",
                            runlocal=False, method="ce", steps=1, sigma=1.0, flip=True)
  assert arg.to_dict() == dict(runlocal=True, method="kd", steps=7, sigma=0.5, flip=False)
  assert configlib.parse_arg(None, runlocal=False).runlocal is False
  assert configlib.parse_arg("", steps=3).steps == 3


def test_parse_arg_names_an_unknown_key_and_a_bad_value():
  with pytest.raises(ValueError, match=r"Unknown config argument 'metod' in 'metod=kd'; "
                                       r"known: \['method', 'runlocal'\]"):
    configlib.parse_arg("metod=kd", runlocal=False, method="ce")
  with pytest.raises(ValueError, match="'many'"):
    configlib.parse_arg("steps=many", steps=1)


def test_the_runlocal_teacher_is_short_and_the_tgt_defaults_are_the_papers():
  full, short = configlib.digits_teacher(), configlib.digits_teacher(runlocal=True)
  assert short.generator_steps < full.generator_steps
  assert short.kl_warmup_steps < short.generator_steps
  assert math.isinf(configlib.tgt_defaults().epsilon)


def test_load_applies_dotted_overrides(tmp_path):
  path = tmp_path / "tiny.py"
  path.write_text("from tgt_jax import configlib\n"
                  "def get_config(arg=None):\n"
                  "  config = configlib.parse_arg(arg, runlocal=False, seed=0)\n"
                  "  config.teacher = configlib.digits_teacher(config.runlocal)\n"
                  "  return config\n")
  config = configlib.load(str(path), "runlocal", **{"seed": 3, "teacher.latent_dim": 4})
  assert config.runlocal and config.seed == 3 and config.teacher.latent_dim == 4
  assert config.teacher.generator_steps == configlib.digits_teacher(True).generator_steps
  with pytest.raises(KeyError, match="no_such"):
    configlib.load(str(path), **{"teacher.no_such.depth": 1})
