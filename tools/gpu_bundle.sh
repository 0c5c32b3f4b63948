#!/usr/bin/env bash
# Build the offline bundle a lent GPU machine needs (its image: Python 3.12, torch 2.11 cu130, torchvision
# 0.26, torchaudio 2.11, transformers, h5py, pillow, numpy 2.x; no package index, no apt). Output is ignored
# by git and travels with a device call via `carry` (at most 64 MiB a call).
#
#   bash tools/gpu_bundle.sh                 # gpu_bundle/wheels: cp312 wheels avvp-extract needs beyond the image
#   bash tools/gpu_bundle.sh --ffmpeg        # also Debian 12 ffmpeg + its library closure, split into
#                                            # gpu_bundle_ffmpeg1/, gpu_bundle_ffmpeg2/ (≈100 MB: two extra calls)
# Then on the device (docs/performance.md "GPU bundle"):
#   bash tools/gpu_bundle_install.sh && .gpu/python benchmarks/gpu_extract.py --skip-ray --json $OUT/gpu.json
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=gpu_bundle
FFMPEG=0
[ "${1:-}" = "--ffmpeg" ] && FFMPEG=1
LIMIT=$((60 * 1024 * 1024))  # leave ~4 MiB of the 64 for the working tree (~3 MB)

# What avvp-extract imports beyond the image, pinned to the versions tested (constraints.txt / environment
# notes). Not here, on purpose: llvmlite/numba (60 MB), scikit-learn, pandas (imported by laion_clap/librosa
# at module level, never called on avvp's path: tools/gpu_bundle/sitecustomize.py stands in for them), ray
# (70 MB: the benchmark uses the local executor). decord (14 MB) is in: avvp's extract extra requires it.
WHEELS=(
  open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.4
  laion-clap==1.1.7 torchlibrosa==0.1.0 librosa==0.11.0 webdataset==1.0.2 braceexpand==0.1.7
  soundfile==0.14.0 cffi==2.1.1 pycparser==3.12 soxr==1.1.0 audioread==3.1.0 lazy_loader==0.6 pooch==1.9.0
  msgpack==1.2.4 decorator==5.3.2 joblib==1.6.0 cloudpickle==3.1.3 platformdirs==4.14.9 threadpoolctl==3.8.0 standard-aifc==3.13.0 standard-sunau==3.13.0
  ffmpeg-python==0.2.0 future==1.0.0 decord==0.6.0
)
rm -rf "$OUT"
mkdir -p "$OUT/wheels"
export PIP_CONSTRAINT=   # the machine-wide cap file is about this machine's torch, not the image's
pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux2010_x86_64 --platform manylinux1_x86_64 -d "$OUT/wheels" "${WHEELS[@]}"
# laion_clap imports wget at module level; it exists only as an sdist (pure Python): build its wheel here
pip wheel --quiet --no-deps --no-build-isolation -w "$OUT/wheels" wget==3.2
cp tools/gpu_bundle/sitecustomize.py "$OUT/"
size=$(du -cb "$OUT" | tail -1 | cut -f1)
echo "gpu_bundle: $(ls "$OUT/wheels" | wc -l) wheels, $((size / 1024)) KiB"
[ "$size" -le "$LIMIT" ] || { echo "gpu_bundle: over $((LIMIT / 1048576)) MiB" >&2; exit 1; }

if [ "$FFMPEG" = 1 ]; then
  # ffmpeg + ffprobe and every library they link, minus what any glibc image has
  rm -rf gpu_bundle_ffmpeg1 gpu_bundle_ffmpeg2 "$OUT.debs"
  mkdir -p "$OUT.debs"
  base="^(libc6|libgcc-s1|libstdc\+\+6|zlib1g|libzstd1|liblzma5|libbz2-1.0|libcrypt1|libselinux1|libpcre2-8-0|libgmp10|libffi8)$"
  pkgs=$( (ldd "$(command -v ffmpeg)"; ldd "$(command -v ffprobe)") | awk '/=>/{print $3}' | sort -u |
          while read -r lib; do dpkg -S "$(readlink -f "$lib")" 2>/dev/null || dpkg -S "$lib" 2>/dev/null || true; done |
          cut -d: -f1 | sort -u | grep -Ev "$base")
  (cd "$OUT.debs" && apt-get download ffmpeg $pkgs >/dev/null)
  part=1; used=0
  mkdir -p gpu_bundle_ffmpeg1
  for deb in $(ls -S "$OUT.debs"/*.deb); do
    s=$(stat -c %s "$deb")
    if [ $((used + s)) -gt "$LIMIT" ]; then part=$((part + 1)); used=0; mkdir -p "gpu_bundle_ffmpeg$part"; fi
    mv "$deb" "gpu_bundle_ffmpeg$part/"; used=$((used + s))
  done
  rmdir "$OUT.debs"
  for d in gpu_bundle_ffmpeg*; do echo "$d: $(ls "$d" | wc -l) debs, $(( $(du -cb "$d" | tail -1 | cut -f1) / 1024 )) KiB"; done
fi
