#!/usr/bin/env bash
# Starts training on every worker, in the background (nohup), each appending to
# its own log, REMOTE_LOGS/$LOG_NAME-<hostname>.log. Rerunning it resumes from the
# newest checkpoint in WORKDIR; it refuses to start while a previous run is alive.
#
# Variables (see common.sh): TPU_NAME, ZONE, PROJECT, TFDS_DATA_DIR, REMOTE_DIR,
# REMOTE_VENV, REMOTE_LOGS, and
#   CONFIG       config file relative to the repository, e.g. configs/imagenet.py (required)
#   WORKDIR      run directory, gs://... on a pod so all workers share it (required)
#   EXTRA_FLAGS  more flags for tgt_jax.main, e.g. "--config.method=tgt_random"
#   LOG_NAME     log file prefix (default: run)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
require_tpu
require CONFIG WORKDIR
if [[ "$WORKDIR" != gs://* ]]; then
  echo "warning: WORKDIR=$WORKDIR is not on gs://: the workers will not share checkpoints." >&2
fi
LOG_NAME="${LOG_NAME:-run}"
log="$REMOTE_LOGS/$LOG_NAME-\$(hostname).log"
pid="$REMOTE_LOGS/$LOG_NAME.pid"

train="python -m tgt_jax.main --config=$(printf %q "$CONFIG") --workdir=$(printf %q "$WORKDIR")"
train+=" --distributed ${EXTRA_FLAGS:-}"
env_vars="${TFDS_DATA_DIR:+TFDS_DATA_DIR=$(printf %q "$TFDS_DATA_DIR") }"

start="mkdir -p \"$REMOTE_LOGS\" && cd \"$REMOTE_DIR\""
start+=" && if [ -f \"$pid\" ] && kill -0 \"\$(cat \"$pid\")\" 2>/dev/null;"
start+=" then echo \"\$(hostname): already running (pid \$(cat \"$pid\"))\"; exit 1; fi"
start+=" && . \"$REMOTE_VENV/bin/activate\""
start+=" && { ${env_vars}nohup $train >> \"$log\" 2>&1 < /dev/null & }"
start+=" && echo \$! > \"$pid\" && echo \"\$(hostname): started, log $log\""
tpu_ssh "$start"
