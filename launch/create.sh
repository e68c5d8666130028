#!/usr/bin/env bash
# Creates the TPU VM slice TPU_NAME (all its workers) with gcloud.
#
# Variables (see common.sh): TPU_NAME, ZONE, PROJECT, ACCELERATOR_TYPE (v4-32),
# RUNTIME_VERSION (tpu-ubuntu2204-base), and
#   SPOT=1          create a Spot TPU (cheaper, can be preempted at any time)
#   PREEMPTIBLE=1   create a preemptible TPU (the older kind of Spot)
#   CREATE_FLAGS    extra flags for gcloud, e.g. "--reserved" or "--network=my-net"
# A preempted TPU stays, stopped: run delete.sh, then create.sh, setup.sh and
# run.sh again; the run resumes from its last checkpoint in the gs:// workdir.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
require_tpu

flags=(--zone="$ZONE" --project="$PROJECT" --accelerator-type="$ACCELERATOR_TYPE"
       --version="$RUNTIME_VERSION")
if [[ "${SPOT:-0}" == 1 ]]; then
  flags+=(--spot)
fi
if [[ "${PREEMPTIBLE:-0}" == 1 ]]; then
  flags+=(--preemptible)
fi
# Word-split on purpose: CREATE_FLAGS holds several flags.
# shellcheck disable=SC2206
flags+=(${CREATE_FLAGS:-})

run_cmd gcloud compute tpus tpu-vm create "$TPU_NAME" "${flags[@]}"
