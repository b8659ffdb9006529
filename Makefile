# `make run` sets everything up and starts the arena with demo models; `make test` runs the suite.
PYTHON ?= python3
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
# This machine's pip configuration names package folders that may be absent; their warnings are noise.
QUIET_PIP := { grep -v '^WARNING: Location' || true; }
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: setup run test lint format bench docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("arena needs Python 3.11 or newer" if sys.version_info < (3, 11) else 0)'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]' 2>&1 | $(QUIET_PIP)
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(BIN)/arena db upgrade
	$(BIN)/arena serve --demo

lint: setup
	$(BIN)/ruff check arena tests bench migrations
	$(BIN)/ruff format --check arena tests bench migrations
	$(BIN)/mypy arena

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The manual in docs/, built offline; --strict turns a broken link or a missing page into an error.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

format: setup
	$(BIN)/ruff format arena tests bench migrations
	$(BIN)/ruff check --fix arena tests bench migrations

bench: setup
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev,bench]' 2>&1 | $(QUIET_PIP)
	for script in bench/*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
