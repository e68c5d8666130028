"""launch/: the pod scripts call gcloud the right way, on every worker, and fail clearly.

A stub `gcloud` first on PATH records each call (and can run the remote command
here in bash, standing in for one worker), so nothing touches Google Cloud.
"""

import glob
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
LAUNCH = os.path.join(ROOT, "launch")
ARG_SEP, CALL_SEP = "\x1f", "\x1e"
BASE_ENV = {"TPU_NAME": "tgt-test", "ZONE": "us-central2-b", "PROJECT": "proj",
            "BUCKET": "bkt", "CONFIG": "configs/imagenet.py",
            "WORKDIR": "gs://bkt/workdirs/run 1", "EXTRA_FLAGS": "--config.method=kd"}
# The stub logs argv; with GCLOUD_EXEC=1 it also acts as one worker whose home is $HOME:
# scp copies there, ssh runs --command=... in bash.
STUB = r"""#!/usr/bin/env bash
{ for a in "$@"; do printf '%s\x1f' "$a"; done; printf '\x1e'; } >> "$GCLOUD_LOG"
if [[ "${GCLOUD_EXEC:-0}" == 1 ]]; then
  if [[ "$4" == scp ]]; then
    exec cp "$5" "$HOME/${6#*:}"
  fi
  for a in "$@"; do
    case "$a" in --command=*) exec bash -c "${a#--command=}" ;; esac
  done
fi
"""


def _script(name, tmp_path, unset=(), **env):
  """Runs launch/NAME.sh with the stub gcloud: (completed process, list of gcloud argv)."""
  stub_dir = tmp_path / "bin"
  stub_dir.mkdir(exist_ok=True)
  (stub_dir / "gcloud").write_text(STUB)
  (stub_dir / "gcloud").chmod(0o755)
  log = tmp_path / "gcloud.log"
  log.write_text("")
  full_env = {"PATH": f"{stub_dir}:{os.environ['PATH']}", "HOME": os.environ.get("HOME", "/"),
              "TMPDIR": str(tmp_path), "GCLOUD_LOG": str(log), **BASE_ENV, **env}
  for var in unset:
    full_env.pop(var)
  out = subprocess.run(["bash", os.path.join(LAUNCH, f"{name}.sh")], env=full_env,
                       capture_output=True, text=True, timeout=20)
  calls = [c.split(ARG_SEP)[:-1] for c in log.read_text().split(CALL_SEP)[:-1]]
  return out, calls


def _tpu_calls(calls, verb):
  return [c for c in calls if c[:4] == ["compute", "tpus", "tpu-vm", verb]]


def _remote_commands(calls):
  return [a[len("--command="):] for c in _tpu_calls(calls, "ssh") for a in c
          if a.startswith("--command=")]


def test_every_script_parses():
  scripts = sorted(glob.glob(os.path.join(LAUNCH, "*.sh")))
  assert len(scripts) >= 8
  for script in scripts:
    out = subprocess.run(["bash", "-n", script], capture_output=True, text=True)
    assert out.returncode == 0, (script, out.stderr)


@pytest.mark.parametrize("name,env", [
    ("create", {}), ("setup", {}), ("setup", {"REPO_URL": "https://example.com/t.git"}),
    ("preflight", {}), ("run", {}), ("logs", {}), ("delete", {})],
    ids=["create", "setup-copy", "setup-git", "preflight", "run", "logs", "delete"])
def test_remote_calls_target_every_worker(tmp_path, name, env):
  out, calls = _script(name, tmp_path, **env)
  assert out.returncode == 0, out.stderr
  assert calls and all(c[:3] == ["compute", "tpus", "tpu-vm"] for c in calls), calls
  for call in _tpu_calls(calls, "ssh") + _tpu_calls(calls, "scp"):
    assert "--worker=all" in call, call
    assert "--zone=us-central2-b" in call and "--project=proj" in call, call
  for command in _remote_commands(calls):            # valid shell for the workers
    check = subprocess.run(["bash", "-n", "-c", command], capture_output=True, text=True)
    assert check.returncode == 0, (command, check.stderr)
  assert "+ gcloud compute tpus tpu-vm" in out.stderr     # each command is echoed


def test_create_passes_type_version_and_spot(tmp_path):
  _, calls = _script("create", tmp_path, ACCELERATOR_TYPE="v4-64",
                     RUNTIME_VERSION="tpu-ubuntu2204-base", SPOT="1")
  [call] = _tpu_calls(calls, "create")
  assert call[4] == "tgt-test"
  assert {"--accelerator-type=v4-64", "--version=tpu-ubuntu2204-base", "--spot"} <= set(call)


def test_setup_copies_this_checkout_or_clones_the_ref(tmp_path):
  _, calls = _script("setup", tmp_path)
  [scp] = _tpu_calls(calls, "scp")
  assert scp[5] == "tgt-test:tgt_jax.tar.gz"
  [command] = _remote_commands(calls)
  assert "tar -xzf tgt_jax.tar.gz" in command and "pip install" in command
  assert "jax[tpu]" in command and "-e " in command
  _, calls = _script("setup", tmp_path, REPO_URL="https://example.com/t.git", REPO_REF="v1.2")
  assert not _tpu_calls(calls, "scp")
  [command] = _remote_commands(calls)
  assert "git clone --quiet https://example.com/t.git" in command
  assert "checkout --quiet v1.2" in command


def test_setup_script_unpacks_and_installs_on_a_worker(tmp_path):
  """The copy mode end to end, with this machine as the worker and a fake uv."""
  home = tmp_path / "home"
  (home / ".local" / "bin").mkdir(parents=True)
  uv = home / ".local" / "bin" / "uv"
  uv.write_text('#!/usr/bin/env bash\necho "$*" >> "$HOME/uv.log"\n'
                'if [[ "$1" == venv ]]; then mkdir -p "${@: -1}/bin"\n'
                '  printf "#!/usr/bin/env bash\\necho jax 0\\n" > "${@: -1}/bin/python"\n'
                '  chmod +x "${@: -1}/bin/python"; fi\n')
  uv.chmod(0o755)
  out, _ = _script("setup", tmp_path, HOME=str(home), GCLOUD_EXEC="1")
  assert out.returncode == 0, out.stderr
  assert (home / "tgt_jax" / "setup.py").exists()
  assert (home / "tgt_jax" / "launch" / "preflight.py").exists()
  assert not (home / "tgt_jax.tar.gz").exists() and not list(tmp_path.glob("tgt_jax.*"))
  uv_calls = (home / "uv.log").read_text().splitlines()
  assert uv_calls[0].startswith("venv ") and uv_calls[0].endswith(f"{home}/tgt_venv")
  assert f"-e {home}/tgt_jax jax[tpu]" in uv_calls[1]
  assert "jax 0" in out.stdout


def test_run_starts_main_distributed_in_background(tmp_path):
  _, calls = _script("run", tmp_path)
  [command] = _remote_commands(calls)
  for part in ("nohup python -m tgt_jax.main", "--config=configs/imagenet.py",
               r"--workdir=gs://bkt/workdirs/run\ 1", "--distributed --config.method=kd",
               "TFDS_DATA_DIR=gs://bkt/tensorflow_datasets", "$(hostname).log"):
    assert part in command, (part, command)


def test_logs_preflight_delete(tmp_path):
  [logs] = _remote_commands(_script("logs", tmp_path)[1])
  assert logs.startswith("tail ") and "-F" in logs
  [preflight] = _remote_commands(_script("preflight", tmp_path)[1])
  assert "launch/preflight.py --distributed" in preflight
  [delete] = _tpu_calls(_script("delete", tmp_path)[1], "delete")
  assert delete[4] == "tgt-test" and "--quiet" in delete


def test_prepare_data_runs_tfds_once_here(tmp_path):
  out, calls = _script("prepare_data", tmp_path, DRY_RUN="1", DATASETS="imagenet2012 cifar10")
  assert out.returncode == 0, out.stderr
  assert not calls                                   # not on the TPU: no gcloud at all
  assert "download_and_prepare" in out.stderr
  for dataset in ("imagenet2012", "cifar10"):
    assert f"{dataset} gs://bkt/tensorflow_datasets" in out.stderr


def test_dry_run_only_prints(tmp_path):
  out, calls = _script("delete", tmp_path, DRY_RUN="1")
  assert out.returncode == 0 and not calls
  assert "+ gcloud compute tpus tpu-vm delete tgt-test" in out.stderr


@pytest.mark.parametrize("name,missing", [
    ("create", "TPU_NAME"), ("setup", "TPU_NAME"), ("preflight", "ZONE"), ("logs", "PROJECT"),
    ("delete", "TPU_NAME"), ("run", "CONFIG"), ("run", "WORKDIR"), ("prepare_data", "BUCKET")])
def test_missing_variable_is_named(tmp_path, name, missing):
  out, calls = _script(name, tmp_path, unset=(missing,))
  assert out.returncode != 0
  assert f"{missing} is not set" in out.stderr, out.stderr
  assert not [c for c in calls if c[:3] == ["compute", "tpus", "tpu-vm"]]


def test_run_detaches_and_refuses_a_second_start(tmp_path):
  """The remote command, run here in bash with a fake venv, starts one detached process."""
  home = tmp_path / "home"
  venv_bin = home / "tgt_venv" / "bin"
  venv_bin.mkdir(parents=True)
  (home / "tgt_jax").mkdir()
  (venv_bin / "activate").write_text(f'PATH="{venv_bin}:$PATH"\n')
  (venv_bin / "python").write_text('#!/usr/bin/env bash\necho "args: $*"\nexec sleep 30\n')
  (venv_bin / "python").chmod(0o755)
  env = {"HOME": str(home), "GCLOUD_EXEC": "1"}
  out, _ = _script("run", tmp_path, **env)
  pid = int((home / "tgt_logs" / "run.pid").read_text())
  try:
    assert out.returncode == 0, out.stderr
    assert "started" in out.stdout
    second, _ = _script("run", tmp_path, **env)
    assert second.returncode != 0 and "already running" in second.stdout
    [log] = (home / "tgt_logs").glob("run-*.log")
    for _ in range(50):
      if "args:" in log.read_text():
        break
      time.sleep(0.1)
    assert ("args: -m tgt_jax.main --config=configs/imagenet.py "
            "--workdir=gs://bkt/workdirs/run 1 --distributed --config.method=kd") in log.read_text()
  finally:
    os.kill(pid, signal.SIGTERM)


def _preflight(*args, devices=8):
  env = {**os.environ, "JAX_PLATFORMS": "cpu",
         "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
  return subprocess.Popen([sys.executable, os.path.join(LAUNCH, "preflight.py"), *args], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_preflight_runs_locally_on_cpu():
  stdout, stderr = _preflight().communicate(timeout=60)
  assert "process 0 of 1, 8 local / 8 global cpu devices" in stdout, stderr
  assert "all-device sum ok" in stdout


def test_preflight_distributed_two_processes_on_cpu():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    port = s.getsockname()[1]
  procs = [_preflight("--distributed", f"--coordinator_address=localhost:{port}",
                      "--num_processes=2", f"--process_id={i}", devices=2) for i in range(2)]
  try:
    outputs = [p.communicate(timeout=60) for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  for i, (stdout, stderr) in enumerate(outputs):
    assert re.search(rf"process {i} of 2, 2 local / 4 global cpu devices", stdout), stderr[-2000:]
    assert "all-device sum ok" in stdout
