# Two commands for a fresh machine: `make demo` and `make test`.
# Each creates .venv when missing and (re)installs the project when pyproject.toml changed.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: demo test lint audit synth layers bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[infra,local,dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/pixflare demo

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q tests

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(MAKE) audit

# --strict: a dependency the advisory service could not look up fails the audit, so an
# unreachable service (a mirror without PyPI's JSON API) never reads as "no vulnerabilities".
audit: $(STAMP)
	$(BIN)/pip-audit --strict --skip-editable --progress-spinner off

synth: $(STAMP)
	$(BIN)/python -m infra.synth

layers: $(STAMP)
	$(BIN)/python -m layers.build

bench: $(STAMP)
	$(BIN)/python bench/variants.py
	$(BIN)/python bench/backup.py
	$(BIN)/python bench/cron_scale.py

clean:
	rm -rf $(VENV) cdk.out layers/build .pytest_cache .mypy_cache .ruff_cache
