"""Every TFDS config's CPU variant runs the real train_and_evaluate under tfds mock data."""

import json
import os
import re

import pytest
import tensorflow_datasets as tfds

from tgt_jax import configlib
from tgt_jax import jobs
from tgt_jax.engine import state as state_lib

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "configs")


def load_config(name, arg):
  return configlib.load(os.path.join(CONFIGS, f"{name}.py"), arg)


@pytest.mark.slow      # 26 s; the TFDS path runs by default in the imagenet test below
def test_cifar10_runlocal_teacher_then_student(tmp_path):
  with tfds.testing.mock_data(num_examples=64, policy=tfds.testing.MockPolicy.USE_CODE):
    results = jobs.run(load_config("cifar10", "runlocal"), str(tmp_path))
  assert results["method"] == "tgt_random" and results["checkpoint_step"] == 4
  assert 0.0 <= results["test_accuracy"] <= 1.0
  assert os.path.exists(tmp_path / "teacher" / "teacher.json")
  with open(tmp_path / "results.json") as f:
    assert json.load(f)["num_devices"] == 8
  assert (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize("name", ["imagenet",
                                  pytest.param("imagenet_lt", marks=pytest.mark.slow)])
def test_imagenet_runlocal_with_a_teacher_from_three_parts(tmp_path, name):
  config = load_config(name, "runlocal")
  assert config.student.dtype == "bfloat16" and config.teacher.kind == "components"
  with tfds.testing.mock_data(num_examples=48, policy=tfds.testing.MockPolicy.USE_CODE):
    results = jobs.run(config, str(tmp_path))
  assert results["data"]["name"] == config.data.name and results["checkpoint_step"] == 3
  assert set(config.data.eval_splits) <= set(results)
  assert (tmp_path / "random_teacher_parts" / "generator" / "component.json").exists()


PRETRAINED = os.path.join(os.path.dirname(__file__), "..", "fixtures", "pretrained")


@pytest.mark.slow      # BiT at 224 px in every step; tests/teachers/test_pretrained.py runs by default
def test_a_student_distils_from_a_pretrained_teacher(tmp_path):
  """imagenet.py's teacher=pretrained on the tiny published-format fixtures (AutoencoderKL,
  BiT), with cifar10's 10 classes (the fixture's head) under mock TFDS data: TGT-gradient
  through E, G and T. (A timm labeler: tests/teachers/test_pretrained.py.)"""
  config = load_config("cifar10", "runlocal,method=tgt_gradient")
  config.teacher = load_config("imagenet", "teacher=pretrained").teacher
  config.teacher.update({"vae_dir": os.path.join(PRETRAINED, "autoencoder_kl"),
                         "labeler_file": os.path.join(PRETRAINED, "bit", "tiny_bit.npz"),
                         "labeler_groups": 4})
  with tfds.testing.mock_data(num_examples=64, policy=tfds.testing.MockPolicy.USE_CODE):
    results = jobs.run(config, str(tmp_path))
  assert results["checkpoint_step"] == 4 and 0.0 <= results["test_accuracy"] <= 1.0
  assert results["teacher_dir"] == config.teacher.vae_dir
  assert (tmp_path / "teacher_identity.json").exists()
  assert any(f.startswith("real_decoded_explored_") for f in os.listdir(tmp_path))


def test_pretrained_teacher_settings_are_named():
  config = load_config("imagenet", "teacher=pretrained")
  with pytest.raises(ValueError, match="needs teacher.vae_dir"):
    jobs.validate(config)
  config.teacher.update({"vae_dir": "v", "labeler_file": "l", "labeler_format": "onnx"})
  with pytest.raises(ValueError, match="Unknown teacher.labeler_format 'onnx'"):
    jobs.validate(config)
  config.teacher.labeler_format = "timm"
  with pytest.raises(ValueError, match="needs teacher.labeler_arch"):
    jobs.validate(config)


def test_epochs_become_steps_from_the_students_set():
  config = load_config("imagenet", "")
  resolved = state_lib.resolve_durations(config, num_examples=128_100)
  assert resolved.num_train_steps == 90 * (128_100 // 1024)
  assert resolved.optimizer.warmup_steps == 5 * (128_100 // 1024)
  assert config.num_train_steps == 0          # the input config is left alone


def test_full_size_configs_validate():
  for name, arg in (("imagenet", ""), ("imagenet_lt", ""), ("cifar10", ""), ("cifar10", "job=teacher")):
    jobs.validate(load_config(name, arg))


WORDNET_FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "wordnet")


def wordnet_config(arg, **overrides):
  return configlib.load(os.path.join(CONFIGS, "wordnet.py"), arg,
                        **{"data.dir": WORDNET_FIXTURE, **overrides})


def test_wordnet_runlocal_pretrain_then_finetune(tmp_path):
  """The text student's jobs without a teacher, on the real file format (the fixture)."""
  pretrained = jobs.run(wordnet_config("runlocal,job=pretrain"), str(tmp_path / "pretrain"))
  assert 0.0 <= pretrained["validation_masked_accuracy"] <= 1.0
  finetuned = jobs.run(
      wordnet_config("runlocal,method=ce", **{"student.init_from": pretrained["pretrained_dir"]}),
      str(tmp_path / "finetuned"))
  assert finetuned["checkpoint_step"] == 6
  assert 0.0 <= finetuned["test"]["macro_f1"] <= 1.0 and "tail_accuracy" in finetuned["test"]


@pytest.mark.slow      # 60 s: the text teacher job (also run by test_train_retrieval's fixture)
def test_wordnet_runlocal_teacher_then_tgt_gradient_student(tmp_path):
  work = str(tmp_path)
  teacher_results = jobs.run(wordnet_config("runlocal,job=teacher"), work)
  assert 0.0 <= teacher_results["reconstruction_token_accuracy"] <= 1.0
  samples = (tmp_path / "teacher" / "samples.txt").read_text()
  assert "real     |" in samples and "explored |" in samples and "noun." in samples

  results = jobs.run(wordnet_config("runlocal,method=tgt_gradient"), work)
  assert results["checkpoint_step"] == 6 and results["data"]["num_labelled"] == 100
  assert 0.0 <= results["test"]["macro_f1"] <= 1.0 and "tail_accuracy" in results["test"]
  assert (tmp_path / "real_decoded_explored_0000006.txt").exists()


def test_wordnet_configs_validate():
  for arg in ("", "job=teacher", "job=pretrain", "student=bag_of_embeddings,method=kd"):
    jobs.validate(wordnet_config(arg))


def _documented_overrides(text):
  return set(re.findall(r"--config\.([A-Za-z_][A-Za-z0-9_.]*)=", text))


def _has_key(config, dotted):
  node = config
  for part in dotted.split("."):
    if not hasattr(node, "keys") or part not in node:
      return False
    node = node[part]
  return True


def test_every_documented_override_exists():
  """A `--config.KEY=` in a config's docstring is a key of that config; one in the README is a
  key of some config (with lock_config, an override of a missing key is an error)."""
  configs = {}
  for name in sorted(n[:-3] for n in os.listdir(CONFIGS) if n.endswith(".py")):
    with open(os.path.join(CONFIGS, f"{name}.py")) as f:
      doc = f.read()
    # The config as loaded, and each `:teacher=...` variant its docstring names.
    variants = [load_config(name, arg) for arg in
                ["", *sorted(set(re.findall(r":(teacher=[a-z_]+)", doc)))]]
    configs.update({f"{name}:{i}": v for i, v in enumerate(variants)})
    missing = [k for k in _documented_overrides(doc)
               if not any(_has_key(v, k) for v in variants)]
    assert not missing, f"configs/{name}.py documents {missing}"
  with open(os.path.join(CONFIGS, "..", "README.md")) as f:
    readme = _documented_overrides(f.read()) - {"KEY"}      # the placeholder in the usage line
  assert readme
  missing = [k for k in readme if not any(_has_key(c, k) for c in configs.values())]
  assert not missing, f"README.md documents {missing}"
