#!/usr/bin/env bash
# Streams the run logs of every worker (tail -f over ssh; Ctrl-C stops watching,
# not training). Worker 0 runs process 0, the only one that writes metrics
# (TensorBoard events, results.json in WORKDIR): its log is the one to follow.
#
# Variables (see common.sh): TPU_NAME, ZONE, PROJECT, REMOTE_LOGS, and
#   LOG_NAME    log file prefix used by run.sh (default: run)
#   TAIL_LINES  lines of history to show first (default: 20)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
require_tpu
LOG_NAME="${LOG_NAME:-run}"

tpu_ssh "tail -n ${TAIL_LINES:-20} -F \"$REMOTE_LOGS/$LOG_NAME-\$(hostname).log\""
