#!/usr/bin/env bash
# Installs tgt_jax on every worker: the code, then a virtualenv with jax[tpu].
#
# Variables (see common.sh): TPU_NAME, ZONE, PROJECT, REPO_URL, REPO_REF,
# REMOTE_DIR, REMOTE_VENV, and
#   PYTHON_VERSION  Python for the virtualenv (default: 3.12; setup.py needs >= 3.11,
#                   newer than the image's python3), fetched by uv
#   JAX_TPU_SPEC    pip requirement for JAX on TPU (default: jax[tpu] in setup.py's range)
# With REPO_URL set, each worker clones it at REPO_REF; without it, this checkout
# is packed (uncommitted edits included) and copied to each worker.
# Rerun it after changing the code; it replaces REMOTE_DIR.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
require_tpu
PYTHON_VERSION="${PYTHON_VERSION:-3.12}"
JAX_TPU_SPEC="${JAX_TPU_SPEC:-jax[tpu]>=0.10.2,<0.11}"

if [[ -n "$REPO_URL" ]]; then
  fetch="rm -rf \"$REMOTE_DIR\" && git clone --quiet $(printf %q "$REPO_URL") \"$REMOTE_DIR\"
git -C \"$REMOTE_DIR\" checkout --quiet $(printf %q "$REPO_REF")"
else
  tarball="$(mktemp "${TMPDIR:-/tmp}/tgt_jax.XXXXXX")"
  trap 'rm -f "$tarball"' EXIT
  run_cmd env COPYFILE_DISABLE=1 tar -czf "$tarball" -C "$REPO_ROOT" --exclude=.git \
    --exclude=.venv --exclude=workdirs --exclude=__pycache__ --exclude=.pytest_cache \
    --exclude='*.egg-info' .
  tpu_scp "$tarball" tgt_jax.tar.gz
  fetch="rm -rf \"$REMOTE_DIR\" && mkdir -p \"$REMOTE_DIR\"
tar -xzf tgt_jax.tar.gz -C \"$REMOTE_DIR\" && rm tgt_jax.tar.gz"
fi

# One multi-line script, run by each worker's shell ($HOME is theirs).
uv='$HOME/.local/bin/uv'
get_uv='curl -LsSf https://astral.sh/uv/install.sh | env UV_UNMANAGED_INSTALL="$HOME/.local/bin" sh'
python="$REMOTE_VENV/bin/python"
tpu_ssh "set -e
cd
$fetch
[ -x \"$uv\" ] || $get_uv
\"$uv\" venv --quiet --allow-existing --python \"$PYTHON_VERSION\" \"$REMOTE_VENV\"
\"$uv\" pip install --quiet --python \"$python\" -e \"$REMOTE_DIR\" \"$JAX_TPU_SPEC\"
\"$python\" -c 'import jax; print(\"jax\", jax.__version__)'"
