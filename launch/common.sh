#!/usr/bin/env bash
# Shared settings and helpers for the launch/*.sh scripts (sourced, not run).
#
# Every setting is an environment variable; export them once in your shell.
#   TPU_NAME          name of the TPU VM (required by every script that talks to it)
#   ZONE              its zone, e.g. us-central2-b (default: gcloud config compute/zone)
#   PROJECT           its Google Cloud project (default: gcloud config project)
#   ACCELERATOR_TYPE  slice type for create.sh (default: v4-32)
#   RUNTIME_VERSION   TPU VM image for create.sh (default: tpu-ubuntu2204-base)
#   BUCKET            GCS bucket (no gs://) for data, teachers and workdirs
#   TFDS_DATA_DIR     TFDS data directory (default: gs://$BUCKET/tensorflow_datasets)
#   REPO_URL          git URL that setup.sh clones on the workers; empty: copy this
#                     checkout instead (local-copy mode, uncommitted edits included)
#   REPO_REF          branch, tag or commit to check out (default: main)
#   REMOTE_DIR        checkout on the workers (default: $HOME/tgt_jax, expanded there)
#   REMOTE_VENV       virtualenv on the workers (default: $HOME/tgt_venv)
#   REMOTE_LOGS       log directory on the workers (default: $HOME/tgt_logs)
#   DRY_RUN=1         print the commands instead of running them
# Written for bash >= 3.2, so that the stock bash of macOS runs it too.
set -euo pipefail

LAUNCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(dirname "$LAUNCH_DIR")"

# Reads one gcloud setting, or nothing when gcloud or the setting is missing.
gcloud_default() {
  gcloud config get-value "$1" 2>/dev/null || true
}

ZONE="${ZONE:-$(gcloud_default compute/zone)}"
PROJECT="${PROJECT:-$(gcloud_default project)}"
ACCELERATOR_TYPE="${ACCELERATOR_TYPE:-v4-32}"
RUNTIME_VERSION="${RUNTIME_VERSION:-tpu-ubuntu2204-base}"
BUCKET="${BUCKET:-}"
BUCKET="${BUCKET#gs://}"
TFDS_DATA_DIR="${TFDS_DATA_DIR:-${BUCKET:+gs://$BUCKET/tensorflow_datasets}}"
REPO_URL="${REPO_URL:-}"
REPO_REF="${REPO_REF:-main}"
# A literal $HOME: the worker's home, expanded by the remote shell.
REMOTE_DIR="${REMOTE_DIR:-\$HOME/tgt_jax}"
REMOTE_VENV="${REMOTE_VENV:-\$HOME/tgt_venv}"
REMOTE_LOGS="${REMOTE_LOGS:-\$HOME/tgt_logs}"
DRY_RUN="${DRY_RUN:-0}"

# One line of help per variable, for the "is not set" errors.
var_help() {
  case "$1" in
    TPU_NAME) echo "the TPU VM's name, e.g. export TPU_NAME=tgt-pod" ;;
    ZONE) echo "the TPU's zone, e.g. export ZONE=us-central2-b" ;;
    PROJECT) echo "the Google Cloud project, e.g. export PROJECT=my-project" ;;
    BUCKET) echo "a GCS bucket without gs://, e.g. export BUCKET=my-bucket" ;;
    CONFIG) echo "the config file, relative to the repository, e.g. configs/imagenet.py" ;;
    WORKDIR) echo "the run's directory, e.g. gs://my-bucket/workdirs/imagenet_tgt" ;;
    *) echo "required" ;;
  esac
}

# Exits with a message naming each variable that is empty or unset.
require() {
  local name missing=0
  for name in "$@"; do
    if [[ -z "${!name:-}" ]]; then
      echo "error: $name is not set ($(var_help "$name"))." >&2
      missing=1
    fi
  done
  if ((missing)); then
    exit 1
  fi
}

require_tpu() {
  require TPU_NAME ZONE PROJECT
}

# Single-quotes one word for display when it needs it; a --flag=value keeps its name bare.
quote_word() {
  local word="$1" prefix=""
  if [[ "$word" =~ ^(--[a-z-]+=)(.*)$ ]]; then
    prefix="${BASH_REMATCH[1]}"
    word="${BASH_REMATCH[2]}"
  fi
  if [[ "$word" =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
    printf '%s%s' "$prefix" "$word"
  else
    local escaped=${word//\'/\'\\\'\'}      # ' → '\''
    printf "%s'%s'" "$prefix" "$escaped"
  fi
}

# Prints a command (copy-pasteable, on stderr), then runs it unless DRY_RUN=1.
run_cmd() {
  local word line="+"
  for word in "$@"; do
    line+=" $(quote_word "$word")"
  done
  echo "$line" >&2
  if [[ "$DRY_RUN" != 1 ]]; then
    "$@"
  fi
}

# Runs one shell command on EVERY worker of the slice: a pod needs them all.
tpu_ssh() {
  run_cmd gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --project="$PROJECT" \
    --worker=all --command="$1"
}

# Copies a local file to the same path (relative to home) on every worker.
tpu_scp() {
  run_cmd gcloud compute tpus tpu-vm scp "$1" "$TPU_NAME:$2" --zone="$ZONE" \
    --project="$PROJECT" --worker=all
}
