#!/usr/bin/env bash
# Deletes the TPU VM TPU_NAME without asking (billing stops; the bucket is kept).
#
# Variables (see common.sh): TPU_NAME, ZONE, PROJECT.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
require_tpu

run_cmd gcloud compute tpus tpu-vm delete "$TPU_NAME" --zone="$ZONE" --project="$PROJECT" --quiet
