#!/usr/bin/env bash
# Runs launch/preflight.py on every worker: one line per host with its process
# index, the process count and the local/global device counts. Run it after
# setup.sh and before run.sh; it hangs if a worker is missing or not set up.
#
# Variables (see common.sh): TPU_NAME, ZONE, PROJECT, REMOTE_DIR, REMOTE_VENV.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
require_tpu

tpu_ssh "cd \"$REMOTE_DIR\" && \"$REMOTE_VENV/bin/python\" launch/preflight.py --distributed"
