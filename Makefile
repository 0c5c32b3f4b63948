# The two entry points of the README: `make demo` and `make test`. Both create the venv if missing.
VENV ?= .venv
PY := $(VENV)/bin/python
# Offline-safe defaults (see README "Dependency notes"): laion_clap stalls ~11 min at import without
# HF_HUB_OFFLINE when there is no network; Ray listens on loopback only and writes no auth token.
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER ?= 0
export RAY_AUTH_MODE ?= disabled
export PYTHONUNBUFFERED := 1

.PHONY: setup demo test test-fast test-fidelity lint bench clean docker-test

$(VENV)/.avvp-installed: pyproject.toml constraints.txt tools/setup_env.sh tools/install_torch_cuda_stub.sh tools/torch_cuda_stub.c
	bash tools/setup_env.sh $(VENV)
	touch $@

setup: $(VENV)/.avvp-installed

demo: setup
	$(PY) -m avvp.demo --out demo_out

# TEST_WORKERS pytest-xdist processes (default 2, one per core of the 2-core CI box; 1 = serial). Serially the
# suite keeps one core busy on average (Python between the torch ops, subprocess and Ray start-up waits):
# 11 min 43 s wall serial vs 7 min 22 s with 2 workers on this 2-core box. --dist loadfile keeps a file's tests
# (and its module fixtures: Ray sessions, built backbones) in one worker.
TEST_WORKERS ?= 2
XDIST = $(if $(filter 1,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

test: setup
	$(PY) -m pytest -q -p no:cacheprovider $(XDIST) tests

# the unit tier: no ffmpeg, no Ray, no backbone builds, no trainer runs, nothing marked slow. tests/helpers/tiers.py
# marks the tests that need those from what they use; `--unit` leaves them out and makes ffmpeg, Ray and
# backbone builds unavailable (a test the marking missed fails naming its marker); `make test` is the whole suite
test-fast: setup
	$(PY) -m pytest -q -p no:cacheprovider $(XDIST) --unit tests

# the fidelity tier: avvp's backbones against the official implementations themselves (laion_clap with
# torchaudio, transformers CLIPModel, the TF-slim VGGish graph, pretrainedmodels, the AVVP R(2+1)D call).
# Their packages never enter $(VENV): torchaudio/pretrainedmodels go to $(FIDELITY)/site (on PYTHONPATH here
# only), TensorFlow to the venv $(FIDELITY)/tf (it needs numpy 2). Prints the max-relative-difference table.
FIDELITY ?= .fidelity
$(FIDELITY)/.installed: tools/setup_fidelity_env.sh $(VENV)/.avvp-installed
	bash tools/setup_fidelity_env.sh $(VENV) $(FIDELITY)
	touch $@

test-fidelity: setup $(FIDELITY)/.installed
	AVVP_FIDELITY=1 AVVP_TF_PYTHON=$(FIDELITY)/tf/bin/python AVVP_FIDELITY_REPORT=$(FIDELITY)/report.md \
	PYTHONPATH=$(CURDIR):$(CURDIR)/$(FIDELITY)/site $(PY) -m pytest -q -p no:cacheprovider tests/fidelity

lint: setup
	$(VENV)/bin/ruff check avvp tests benchmarks tools

bench: setup
	$(PY) benchmarks/extract.py
	$(PY) benchmarks/train.py

# opt-in, not part of `make test`: builds the CPU image and runs it (one container with --network none, then a
# host-network head + 2 workers on 127.0.0.1); BASE_IMAGE=... skips ../shared/tools/docker-local-base.sh
docker-test: setup
	PY=$(PY) bash docker/test.sh

clean:
	rm -rf demo_out .pytest_cache
