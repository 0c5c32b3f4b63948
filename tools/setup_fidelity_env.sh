#!/usr/bin/env bash
# Build the environment of the fidelity test tier (`make test-fidelity`). Usage:
#   tools/setup_fidelity_env.sh MAIN_VENV FIDELITY_DIR
# It never changes MAIN_VENV (the venv `make test` uses):
# - FIDELITY_DIR/site: the official torch-side packages the main venv lacks, installed with --no-deps into a
#   folder put on PYTHONPATH by the make target: torchaudio 2.11 (declares no torch pin; its CUDA-built
#   extension loads through the main venv's CUDA stand-ins, tools/install_torch_cuda_stub.sh), laion_clap
#   then runs its own torchaudio log-mel; pretrainedmodels 0.7.4 (the AVVP ResNet-152 script's model) with
#   the two packages it imports without declaring them all (six, munch).
# - FIDELITY_DIR/tf: a venv of its own for TensorFlow + tf-slim (the TF-slim VGGish graph); TF 2.21 needs
#   numpy 2 while laion_clap pins numpy 1.26, so the two cannot share one venv.
set -euo pipefail
main=${1:?main venv}
dir=${2:?fidelity dir}
mkdir -p "$dir"
pip_main=("$main/bin/python" -m pip install --disable-pip-version-check -q)
"${pip_main[@]}" --no-deps --upgrade --target "$dir/site" \
  torchaudio==2.11.0 pretrainedmodels==0.7.4 six==1.17.0 munch==4.0.0
[ -x "$dir/tf/bin/python" ] || python3 -m venv "$dir/tf"
"$dir/tf/bin/python" -m pip install --disable-pip-version-check -q \
  tensorflow-cpu==2.21.0 tf-slim==1.1.0 "numpy<2.3"
PYTHONPATH="$dir/site" "$main/bin/python" -c "import torchaudio, pretrainedmodels; print('fidelity site: torchaudio', torchaudio.__version__, 'pretrainedmodels', pretrainedmodels.__version__)"
"$dir/tf/bin/python" -c "import tensorflow as tf, tf_slim; print('fidelity tf:', tf.__version__)"
