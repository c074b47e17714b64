# Quick start:  make demo   (set up .venv, generate synthetic OpenEDS, precompute, train, export ONNX)
#               make test   (set up .venv, run the whole test suite)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0

.PHONY: setup demo test bench clean

setup: $(VENV)/.installed

# torch is pinned here (the CPU wheel on this machine kind) and declared loosely in pyproject.toml.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet torch==$(TORCH_VERSION)
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

demo: setup
	$(PY) -m training.demo

test: setup
	$(PY) -m pytest

bench: setup
	$(PY) benchmarks/bench.py

clean:
	rm -rf demo_output .pytest_cache .hypothesis
