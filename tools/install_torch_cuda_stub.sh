#!/usr/bin/env bash
# Make the CUDA-built torchvision (and torchaudio) wheels importable against a CPU-only torch.
# Usage: tools/install_torch_cuda_stub.sh VENV_DIR   (run after torch and torchvision are installed)
# Does nothing when torch ships its own CUDA libraries (a CUDA torch must never see these stubs).
set -euo pipefail
venv=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [ -e "$site/torch/lib/libc10_cuda.so" ]; then
  echo "torch has its own CUDA libraries: no stubs installed"; exit 0
fi
stub_dir="$venv/lib/torch_cuda_stub"
mkdir -p "$stub_dir"
for lib in libc10_cuda.so libtorch_cuda.so; do
  gcc -shared -fPIC -O2 -Wl,-soname,$lib -o "$stub_dir/$lib" "$here/torch_cuda_stub.c"
done
# torchvision's _C.so also needs libcudart.so.13; the wheel bundles one in torchvision.libs
cudart=$(ls "$site"/torchvision.libs/libcudart*.so.13 2>/dev/null | head -1 || true)
if [ -n "$cudart" ]; then ln -sf "$cudart" "$stub_dir/libcudart.so.13"; fi
# a .pth line is exec'd at every interpreter start (pytest, subprocesses, Ray workers): preload the
# stand-ins globally so the extensions' NEEDED entries resolve by soname
cat > "$site/avvp_torch_cuda_stub.py" <<'PY'
"""Preload CUDA stand-in libraries so CUDA-built torchvision/torchaudio extensions load on CPU torch."""
import ctypes
import os
import sys

_stub_dir = os.path.join(sys.prefix, "lib", "torch_cuda_stub")
for _lib in ("libcudart.so.13", "libc10_cuda.so", "libtorch_cuda.so"):
    _path = os.path.join(_stub_dir, _lib)
    if os.path.exists(_path):
        ctypes.CDLL(_path, mode=ctypes.RTLD_GLOBAL)
PY
echo "import avvp_torch_cuda_stub" > "$site/00_avvp_torch_cuda_stub.pth"
echo "CUDA stand-ins installed in $stub_dir"
