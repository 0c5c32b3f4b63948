#!/usr/bin/env bash
# On a lent GPU machine (no index, no apt): install gpu_bundle/ (tools/gpu_bundle.sh) beside the image's
# Python into .gpu/ (ignored by git; kept on a warm machine between calls) and write .gpu/python, the
# image's interpreter with the bundle, avvp and (when the image has none) the bundled ffmpeg.
#   bash tools/gpu_bundle_install.sh && .gpu/python benchmarks/gpu_extract.py --skip-ray --json $OUT/gpu.json
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${AVVP_PYTHON:-}
[ -z "$PY" ] && [ -x /opt/torch/.venv/bin/python ] && PY=/opt/torch/.venv/bin/python
[ -z "$PY" ] && PY=$(command -v python3)
mkdir -p .gpu
if [ -d gpu_bundle/wheels ]; then
  "$PY" -m pip install --quiet --no-index --no-deps --target .gpu/site --upgrade gpu_bundle/wheels/*.whl
  cp gpu_bundle/sitecustomize.py .gpu/site/
fi
unpacked=0
for d in gpu_bundle_ffmpeg*; do  # a part carried by this call; earlier parts stay in .gpu/root
  [ -d "$d" ] || continue
  for deb in "$d"/*.deb; do dpkg -x "$deb" .gpu/root; done
  unpacked=1
done
if [ ! -d .gpu/site ]; then
  [ "$unpacked" = 1 ] && { echo "gpu_bundle_install: ffmpeg part unpacked into .gpu/root; carry gpu_bundle next"; exit 0; }
  echo "gpu_bundle_install: no gpu_bundle/wheels carried and nothing installed yet" >&2; exit 2
fi
{
  echo "export PYTHONPATH=$ROOT/.gpu/site:$ROOT\${PYTHONPATH:+:\$PYTHONPATH}"
  echo "export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RAY_AUTH_MODE=disabled"
  if ! command -v ffmpeg >/dev/null || ! command -v ffprobe >/dev/null; then
    if [ -x .gpu/root/usr/bin/ffmpeg ]; then
      libs=$(find "$ROOT/.gpu/root/lib" "$ROOT/.gpu/root/usr/lib" -type d 2>/dev/null | tr '\n' ':')
      echo "export PATH=$ROOT/.gpu/root/usr/bin:\$PATH LD_LIBRARY_PATH=$libs\${LD_LIBRARY_PATH:-}"
      echo "export AVVP_FFMPEG=$ROOT/.gpu/root/usr/bin/ffmpeg AVVP_FFPROBE=$ROOT/.gpu/root/usr/bin/ffprobe"
    else
      echo "echo 'gpu bundle: no ffmpeg/ffprobe on this machine and none unpacked (tools/gpu_bundle.sh --ffmpeg)' >&2"
    fi
  fi
} > .gpu/env.sh
printf '#!/usr/bin/env bash\nsource %s/.gpu/env.sh\nexec %s "$@"\n' "$ROOT" "$PY" > .gpu/python
chmod +x .gpu/python
.gpu/python -c "import avvp, open_clip, laion_clap, soxr, soundfile, ffmpeg, torch, numpy; print('gpu bundle ok: torch', torch.__version__, 'numpy', numpy.__version__, 'cuda', torch.cuda.is_available())"
