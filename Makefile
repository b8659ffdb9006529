# `make run` sets everything up and starts the arena with demo models; `make test` runs the suite.
# Installs come from the lock files, pinned with hashes; `make lock` rewrites them after a change
# to the dependencies in pyproject.toml (`make lock UPGRADE=--upgrade` moves every pin forward).
PYTHON ?= python3
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
# This machine's pip configuration names package folders that may be absent; their warnings are noise.
QUIET_PIP := { grep -v '^WARNING: Location' || true; }
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
LOCK := requirements.lock
DEV_LOCK := requirements-dev.lock
PIP := $(BIN)/pip --disable-pip-version-check
# One lock for every platform and Python from 3.11 on; `make lock` is what a header names.
COMPILE := $(BIN)/uv pip compile pyproject.toml --quiet --universal --python-version 3.11 \
	--generate-hashes --custom-compile-command 'make lock' $(UPGRADE)

.PHONY: setup run test lint format bench docs clean lock screenshots

# The locked packages with their hashes checked, then the arena itself, built by the hatchling
# the lock has just installed.
$(STAMP): pyproject.toml $(DEV_LOCK)
	$(PYTHON) -c 'import sys; sys.exit("arena needs Python 3.11 or newer" if sys.version_info < (3, 11) else 0)'
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --require-hashes -r $(DEV_LOCK) 2>&1 | $(QUIET_PIP)
	$(PIP) install --quiet --no-deps --no-build-isolation -e . 2>&1 | $(QUIET_PIP)
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(BIN)/arena db upgrade
	$(BIN)/arena serve --demo

lint: setup
	$(BIN)/ruff check arena tests bench migrations
	$(BIN)/ruff format --check arena tests bench migrations
	$(BIN)/mypy arena

# Most tests wait on servers, subprocesses and a browser rather than compute, so the suite runs on
# more processes than there are cores; TEST_WORKERS=0 runs it in this one process.
TEST_WORKERS ?= 4

test: lint
	$(BIN)/python -m pytest --numprocesses $(TEST_WORKERS) $(PYTEST_ARGS)

# The manual in docs/, built offline; --strict turns a broken link or a missing page into an error.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# The README's pictures of each mode (docs/images/), from a demo arena in headless Chromium.
screenshots: setup
	$(BIN)/python docs/screenshots.py

format: setup
	$(BIN)/ruff format arena tests bench migrations
	$(BIN)/ruff check --fix arena tests bench migrations

lock: setup
	$(COMPILE) --output-file $(LOCK)
	$(COMPILE) --extra dev --output-file $(DEV_LOCK)

bench: setup
	$(PIP) install --quiet -e '.[dev,bench]' 2>&1 | $(QUIET_PIP)
	for script in bench/*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
