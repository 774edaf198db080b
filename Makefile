# Opus Chain: `make dev` runs a single-validator dev chain, `make test` the whole test suite.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Reinstalled only when pyproject.toml changes (or the venv is new).
STAMP := $(VENV)/.opus-installed

.PHONY: dev test bench bench-sync bench-pool lint install check-python

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

install: check-python $(STAMP)

# Python >= 3.11 first ("Python >= 3.11 needed, found 3.10"), and a .venv made by another
# Python is rebuilt instead of failing on a pinned package.
check-python:
	@$(PYTHON) scripts/check_python.py $(VENV)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e '.[dev]'
	touch $(STAMP)
