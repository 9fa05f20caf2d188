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

.PHONY: setup demo test bench clean-data

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing torch 2.14.1 + torchvision 0.29.1 first (CPU torch 2.13 breaks torchvision)"
	$(PY) -m pip install -q --disable-pip-version-check torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev,anime]'
	@touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/toontalker-bench doctor --short
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/dvc repro
	$(BIN)/toontalker-bench run --method toontalker
	$(BIN)/toontalker-bench leaderboard show

test: setup
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: setup
	$(BIN)/python -m benchmarks.run

clean-data:
	rm -rf data runs
