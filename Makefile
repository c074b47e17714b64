# Quick start:  make demo   (set up .venv, generate synthetic OpenEDS, precompute, train, export ONNX)
#               make test   (set up .venv, run the whole test suite)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0
UV_VERSION ?= 0.13.9
# uv.lock's versions for this platform, torch and what only torch needs pruned (tests/test_project.py exports the same)
LOCKED := $(VENV)/requirements.lock.txt
EXPORT_FLAGS := --frozen --format requirements.txt --no-hashes --no-emit-project --extra dev --prune torch

.PHONY: setup demo test bench lock clean

setup: $(VENV)/.installed

# Exactly uv.lock's versions, installed with pip: torch is pinned here per platform (the CPU wheel on this machine
# kind; uv would download a multi-GB CUDA build) and declared loosely in pyproject.toml; everything else comes from
# the lock (the Modal image runs `uv sync --frozen` on the same file). tests/test_project.py fails when the
# environment differs from the lock.
$(VENV)/.installed: pyproject.toml uv.lock
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet uv==$(UV_VERSION) torch==$(TORCH_VERSION)
	$(VENV)/bin/uv export $(EXPORT_FLAGS) --quiet --output-file $(LOCKED)
	$(VENV)/bin/pip install --quiet -r $(LOCKED)
	$(VENV)/bin/pip install --quiet --no-deps -e .
	touch $@

demo: setup
	$(PY) -m training.demo

test: setup
	$(PY) -m pytest

bench: setup
	$(PY) benchmarks/bench.py

# Update uv.lock to the newest versions pyproject.toml allows (then `make setup` installs them); UV_FIND_LINKS is
# unset so that the lock records only registry sources, never this machine's paths.
lock: setup
	env -u UV_FIND_LINKS $(VENV)/bin/uv lock --upgrade
	rm -f $(VENV)/.installed

clean:
	rm -rf demo_output .pytest_cache .hypothesis
