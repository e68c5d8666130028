#!/usr/bin/env bash
# Prepares TFDS datasets ONCE into TFDS_DATA_DIR (on GCS), from where every worker
# reads them. Runs here, not on the TPU: use a machine with tgt_jax installed,
# ideally a VM in the bucket's region (ImageNet is ~150 GB to write).
#
# Variables (see common.sh): BUCKET or TFDS_DATA_DIR, and
#   DATASETS    space-separated TFDS names (default: imagenet2012)
#   MANUAL_DIR  where manually downloaded files are (default: TFDS's own,
#               $TFDS_DATA_DIR/downloads/manual)
#   PYTHON      interpreter with tgt_jax's requirements (default: python3)
# imagenet2012 cannot be downloaded by TFDS: first put ILSVRC2012_img_train.tar and
# ILSVRC2012_img_val.tar (from image-net.org) in MANUAL_DIR. This calls the TFDS
# builder from Python: `tfds build` needs apache-beam, which tgt_jax does not install.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
if [[ -z "$TFDS_DATA_DIR" ]]; then
  require BUCKET
fi
DATASETS="${DATASETS:-imagenet2012}"
MANUAL_DIR="${MANUAL_DIR:-}"
PYTHON="${PYTHON:-python3}"

read -r -d '' prepare <<'PY' || true
import sys
import tensorflow_datasets as tfds
name, data_dir, manual_dir = sys.argv[1:]
config = tfds.download.DownloadConfig(manual_dir=manual_dir or None)
builder = tfds.builder(name, data_dir=data_dir)
builder.download_and_prepare(download_config=config)
print(f"{name}: {builder.info.splits} in {builder.data_dir}")
PY

for dataset in $DATASETS; do
  run_cmd "$PYTHON" -c "$prepare" "$dataset" "$TFDS_DATA_DIR" "$MANUAL_DIR"
done
