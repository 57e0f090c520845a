# wattkeeper: `make demo` runs the demo, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
# `make bench RECORD=1` also writes tests/bench/results-<date>.json (commit it with the README table);
# BENCH_ARGS picks modules, e.g. BENCH_ARGS="sweep memory".
RECORD ?=
BENCH_ARGS ?=

.PHONY: demo test lint bench install dev test-deps clean
# A recipe that fails leaves no target behind (e.g. a venv whose pip upgrade failed is made again).
.DELETE_ON_ERROR:

$(BIN)/python:
	./.ci/make-venv.sh $(PYTHON) $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.dev: $(VENV)/.installed
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

dev: $(VENV)/.dev

demo: $(VENV)/.installed
	$(BIN)/wattkeeper demo

test-deps:
	./.ci/test-deps.sh

test: $(VENV)/.dev test-deps
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check service drivers simulators tests
	$(BIN)/mypy

bench: $(VENV)/.dev test-deps
	$(BIN)/python -m tests.bench $(if $(RECORD),--record) $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
