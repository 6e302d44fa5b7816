# Two entry points, each self-contained on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PATCHREG_HOME ?= $(CURDIR)/.patchreg-demo
export PATCHREG_HOME

.PHONY: demo test lint install clean bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch first and pinned: 2.13.0 is a CPU build on local disk; the project's range keeps it.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet "torch==2.13.0" || $(BIN)/pip install --quiet "torch>=2.3,<2.14"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# The whole story on a tiny model family, in $(PATCHREG_HOME); `make demo DEMO_ARGS=--quick` for ~20 s.
demo: $(STAMP)
	$(BIN)/patchreg demo $(DEMO_ARGS)

# The whole suite on SQLite and PostgreSQL, after the lint gate.
test: lint
	$(BIN)/python -m pytest -q

# ruff, mypy (strict on core/, registry/, cli/, worker/; defaults on trainer/), the import contracts.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/test_architecture.py

clean:
	rm -rf $(VENV) .patchreg-demo .pytest_cache
