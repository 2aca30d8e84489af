#!/usr/bin/env bash
# The wheels benchmarks/device_run.sh needs on a GPU machine without internet, into .whl/.
#
#   benchmarks/device_wheels.sh              # run where pip reaches the registry; then carry .whl
#
# The lent GPU machines' image (Python 3.12, x86_64) already holds torch, torchvision, numpy,
# scipy, pillow, click, tqdm, matplotlib, timm, huggingface_hub, safetensors, regex, pytest and
# hypothesis (/work/.library/device/KINDS.md, read 2026-11-17); eoid also needs the packages
# below, at the versions of constraints.txt. No dependencies are resolved (--no-deps): this list
# is the closure of what is missing there. .whl/ is git-ignored (about 15 MB).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PACKAGES=(
    open_clip_torch==3.3.0   # the teacher (pure Python)
    ftfy==6.3.1              # open_clip's tokenizer
    wcwidth==0.9.4           # ftfy's
    zarr==3.1.6              # the cache store
    numcodecs==0.16.6        # zarr's codecs (compiled)
    donfig==0.8.1.post1      # zarr's config
    google-crc32c==1.9.0     # zarr's checksums (compiled)
    pycocotools==2.0.11      # imported by the COCO reader's tests (compiled)
)
mkdir -p "$ROOT/.whl"
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$ROOT/.whl" "${PACKAGES[@]}"
ls -l "$ROOT/.whl"
