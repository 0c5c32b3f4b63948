#!/usr/bin/env bash
# Create (or complete) the project's virtual environment. Usage: tools/setup_env.sh VENV_DIR
# Order matters (measured, see README "Dependency notes"): torch alone first, so that no other
# requirement can pull a multi-GB CUDA torch; then everything else in one resolve; then the CUDA
# stand-ins that make the CUDA-built torchvision wheel import on a CPU torch.
set -euo pipefail
venv=${1:-.venv}
here=$(cd "$(dirname "$0")/.." && pwd)
# Debian packages: ffmpeg/ffprobe are required; chromium (the headless-browser test of the HTML page) and
# espeak-ng (speech in the demo clips) are optional and only warned about when they cannot be installed.
apt_install() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  elif command -v sudo >/dev/null && command -v apt-get >/dev/null && sudo -n true 2>/dev/null; then
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  else
    return 1
  fi
}
if ! command -v ffmpeg >/dev/null || ! command -v ffprobe >/dev/null; then
  apt_install ffmpeg || { echo "setup_env: ffmpeg/ffprobe not found and cannot be installed automatically; install ffmpeg" >&2; exit 1; }
fi
optional=()
command -v chromium >/dev/null || optional+=(chromium)
command -v espeak-ng >/dev/null || optional+=(espeak-ng)
if [ "${#optional[@]}" -gt 0 ] && [ -z "${AVVP_NO_APT_EXTRAS:-}" ]; then
  apt_install "${optional[@]}" || echo "setup_env: could not install ${optional[*]} (optional: HTML browser test, demo speech)" >&2
fi
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
pip=("$venv/bin/python" -m pip install --disable-pip-version-check -q)
# torch: on the CPU build machine `torch==2.13.0` resolves to a local CPU wheel; AVVP_TORCH overrides
if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
  # AVVP_TORCH may carry pip options (an index URL); word splitting is intended
  # shellcheck disable=SC2086
  "${pip[@]}" ${AVVP_TORCH:-torch==2.13.0}
fi
# AVVP_INSTALL: what to install of the project (default: editable with every extra and the dev tools, for
# tests); the Docker images install it non-editable with the cluster extra (which includes every command's
# extra): AVVP_INSTALL="$here[cluster]"
# shellcheck disable=SC2086
"${pip[@]}" -c "$here/constraints.txt" ${AVVP_INSTALL:--e $here[all,dev]}
bash "$here/tools/install_torch_cuda_stub.sh" "$venv"
"$venv/bin/python" -c "import torchvision, h5py, ray; print('setup_env: ok, torchvision', torchvision.__version__)"
