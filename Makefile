# recloop — every target installs what it needs into .venv first.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# A MovieLens copy beside the checkout (as on this project's machines) is used when present;
# otherwise the loader downloads and verifies the official zip.
SHARED_MOVIELENS := $(wildcard ../shared/data/ml-100k)
ifneq ($(SHARED_MOVIELENS),)
export MOVIELENS_DIR ?= $(abspath $(SHARED_MOVIELENS))
endif
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: install test lint bench demo pipelines clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev,infra]"
	# Stale or over-wide pins: installed without their declared dependencies (see pyproject.toml).
	$(PY) -m pip install --quiet -c constraints.txt --no-deps tf-keras tf-agents
	touch $@

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: install
	$(PY) -m benchmarks.run

demo: install
	$(PY) -m app.demo

pipelines: install
	$(PY) -m pipelines.compile --output-dir build/pipelines

clean:
	rm -rf .recloop .pytest_cache .mypy_cache .ruff_cache
