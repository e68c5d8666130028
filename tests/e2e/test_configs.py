"""Every TFDS config's CPU variant runs the real train_and_evaluate under tfds mock data."""

import hashlib
import json
import os
import re

import numpy as np
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


@pytest.mark.parametrize("method", [
    # 47 s; tgt_random runs the same TFDS mock path with a teacher
    pytest.param("ce", marks=pytest.mark.slow),
    # 243 s under heavy load (tgt_random 276 s): tgt_random runs the same job path, and the
    # labeler-only load kd adds runs by default in tests/teachers/test_pretrained.py
    # (test_a_labeler_only_teacher_reads_no_autoencoder_and_refuses_e_and_g)
    pytest.param("kd", marks=pytest.mark.slow), "tgt_random",
    # 42 s; a TGT-gradient step through published-format parts also runs by default in
    # tests/teachers/test_pretrained.py
    pytest.param("tgt_gradient", marks=pytest.mark.slow)])
def test_imagenet_runlocal_with_a_teacher_from_published_files(tmp_path, method):
  """The default teacher kind on the tiny published-format fixtures (diffusers AutoencoderKL,
  a 1000-class BiT in big_vision's layout) under mock ImageNet: kd reads the labeler's file
  alone, the TGT methods go through E, G and T; ce loads no teacher."""
  config = load_config("imagenet", f"runlocal,method={method}")
  assert config.teacher.kind == "pretrained" and config.student.model == "resnet_tiny"
  with tfds.testing.mock_data(num_examples=48, policy=tfds.testing.MockPolicy.USE_CODE):
    results = jobs.run(config, str(tmp_path))
  assert results["checkpoint_step"] == 3 and 0.0 <= results["test_accuracy"] <= 1.0
  identity = tmp_path / "teacher_identity.json"
  if method == "ce":
    assert results["teacher_dir"] is None and not identity.exists()
    return
  recorded = json.loads(identity.read_text())["identity"]
  parts = sorted(k for k in recorded if k.startswith("teacher_params."))
  files = sorted(k[len("sha256 of "):] for k in recorded if k.startswith("sha256 of "))
  vae = [os.path.join(config.teacher.vae_dir, n) for n in ("config.json",
                                                           "diffusion_pytorch_model.safetensors")]
  if method == "kd":
    assert results["teacher_dir"] == config.teacher.labeler_file
    assert parts == ["teacher_params.labeler"] and files == [config.teacher.labeler_file]
  else:
    assert results["teacher_dir"] == config.teacher.vae_dir
    assert parts == ["teacher_params.generator", "teacher_params.labeler"]
    assert files == sorted([config.teacher.labeler_file, *vae])
  # A published file carries no checksum: its sha256 is recorded at first use.
  assert recorded[f"sha256 of {config.teacher.labeler_file}"] == hashlib.sha256(
      open(config.teacher.labeler_file, "rb").read()).hexdigest()
  if method != "kd":
    assert any(f.startswith("real_decoded_explored_") for f in os.listdir(tmp_path))


@pytest.mark.slow   # ~20 s idle; the report job runs by default on digits (tests/e2e/test_train.py)
def test_imagenet_runlocal_teacher_report(tmp_path):
  """job=teacher_report on the published-format fixtures: every figure, the grid, nothing
  written to the teacher's files."""
  config = load_config("imagenet", "runlocal,job=teacher_report")
  with tfds.testing.mock_data(num_examples=48, policy=tfds.testing.MockPolicy.USE_CODE):
    results = jobs.run(config, str(tmp_path))
  assert results["job"] == "teacher_report" and results["num_examples"] == 32
  assert results["split"] == "validation" and results["teacher"]["num_classes"] == 1000
  for key in ("reconstruction_psnr_db", "labeler_test_accuracy",
              "labeler_accuracy_on_reconstructions", "label_kept_at_sigma_0.5",
              "prior_label_entropy_nats"):
    assert np.isfinite(results[key]), key
  assert 0 < results["prior_label_entropy_nats"] <= results["prior_label_entropy_uniform_nats"]
  assert any(f.startswith("teacher_report_") and f.endswith(".png")
             for f in os.listdir(tmp_path))


@pytest.mark.slow      # 112, 66, 45 s on 2 shared cores; tests/teachers/test_teachers_diffusion.py runs it
@pytest.mark.parametrize("method", ["tgt_random", "tgt_prior", "teacher_report"])
def test_imagenet_runlocal_with_a_diffusion_teacher(tmp_path, method):
  """teacher=dit on the tiny fixtures (a 1,000-class DiT, the AutoencoderKL, the BiT labeler)
  under mock ImageNet: 3 student steps of SDEdit around each example (tgt_random) or samples
  from pure noise (tgt_prior), every published file in the identity; and the teacher report,
  whose label-kept figures are at each SDEdit strength."""
  arg = "job=teacher_report" if method == "teacher_report" else f"method={method}"
  config = load_config("imagenet", f"runlocal,teacher=dit,{arg}")
  with tfds.testing.mock_data(num_examples=48, policy=tfds.testing.MockPolicy.USE_CODE):
    results = jobs.run(config, str(tmp_path))
  t = config.teacher
  if method == "teacher_report":
    assert results["teacher_kind"] == "diffusion" and results["num_examples"] == 32
    for key in ("reconstruction_psnr_db", "labeler_accuracy_on_reconstructions",
                "label_kept_at_sigma_0.25", "label_kept_at_sigma_2.0", "prior_label_entropy_nats"):
      assert np.isfinite(results[key]), key
    assert results["teacher"]["native_resolution"] == 16
    assert any(f.startswith("teacher_report_") for f in os.listdir(tmp_path))
    return
  assert results["checkpoint_step"] == 3 and 0.0 <= results["test_accuracy"] <= 1.0
  assert results["teacher_dir"] == t.transformer_dir
  recorded = json.loads((tmp_path / "teacher_identity.json").read_text())["identity"]
  assert sorted(k for k in recorded if k.startswith("teacher_params.")) == [
      "teacher_params.diffusion", "teacher_params.generator", "teacher_params.labeler"]
  files = [k for k in recorded if k.startswith("sha256 of ")]
  assert len(files) == 6 and f"sha256 of {t.scheduler_dir}/scheduler_config.json" in files
  assert any(f.startswith("real_decoded_explored_") for f in os.listdir(tmp_path))


@pytest.mark.slow      # the BigBiGAN-shaped kind; the published-files kind runs by default above
@pytest.mark.parametrize("name", ["imagenet", "imagenet_lt"])
def test_imagenet_runlocal_with_a_teacher_from_three_parts(tmp_path, name):
  config = load_config(name, "runlocal,teacher=components")
  assert config.student.dtype == "bfloat16" and config.teacher.kind == "components"
  with tfds.testing.mock_data(num_examples=48, policy=tfds.testing.MockPolicy.USE_CODE):
    results = jobs.run(config, str(tmp_path))
  assert results["data"]["name"] == config.data.name and results["checkpoint_step"] == 3
  assert set(config.data.eval_splits) <= set(results)
  assert (tmp_path / "random_teacher_parts" / "generator" / "component.json").exists()


def test_pretrained_teacher_settings_are_named():
  config = load_config("imagenet", "")
  with pytest.raises(ValueError, match="needs teacher.vae_dir.*stabilityai/sd-vae-ft-mse"):
    jobs.validate(config)
  for key, value, match in (("labeler_pool_padding", "reflect", "labeler_pool_padding 'reflect'"),
                            ("labeler_resolution", -1, "labeler_resolution=-1")):
    bad = load_config("imagenet", "runlocal")
    bad.teacher[key] = value
    with pytest.raises(ValueError, match=match):
      jobs.validate(bad)
  config.teacher.update({"vae_dir": "v", "labeler_file": "l", "labeler_format": "onnx"})
  with pytest.raises(ValueError, match="Unknown teacher.labeler_format 'onnx'"):
    jobs.validate(config)
  config.teacher.update({"labeler_format": "timm", "labeler_arch": "resnet50d"})
  with pytest.raises(ValueError, match="teacher.labeler_arch='resnet50d'.*deep stem"):
    jobs.validate(config)


def test_epochs_become_steps_from_the_students_set():
  config = load_config("imagenet", "")
  resolved = state_lib.resolve_durations(config, num_examples=128_100)
  assert resolved.num_train_steps == 90 * (128_100 // 1024)
  assert resolved.optimizer.warmup_steps == 5 * (128_100 // 1024)
  assert config.num_train_steps == 0          # the input config is left alone


def test_full_size_configs_validate():
  vae = {"teacher.vae_dir": "gs://BUCKET/sd-vae-ft-mse"}
  for name, arg, overrides in (("imagenet", "", vae), ("imagenet_lt", "", vae),
                               ("imagenet", "job=teacher_report", vae),
                               ("imagenet", "teacher=components", {}), ("cifar10", "", {}),
                               ("cifar10", "job=teacher", {})):
    config = load_config(name, arg)
    config.update_from_flattened_dict(overrides)
    jobs.validate(config)


WORDNET_FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "wordnet")


def wordnet_config(arg, **overrides):
  return configlib.load(os.path.join(CONFIGS, "wordnet.py"), arg,
                        **{"data.dir": WORDNET_FIXTURE, **overrides})


@pytest.mark.slow   # ~38 s idle; masking, the loss and load_into have default unit tests
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
