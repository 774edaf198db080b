# Opus Chain: `make dev` runs a single-validator dev chain, `make test` the whole test suite.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Reinstalled only when pyproject.toml changes (or the venv is new).
STAMP := $(VENV)/.opus-installed

.PHONY: dev test bench bench-sync bench-pool lint install

dev: install
	$(BIN)/opus --dev

test: install
	$(BIN)/pytest -q

bench: install
	$(BIN)/python -m bench.import_blocks

bench-sync: install
	$(BIN)/python -m bench.sync

bench-pool: install
	$(BIN)/python -m bench.pool_attack

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy --strict runtime client

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e '.[dev]'
	touch $(STAMP)
