# Two commands for a fresh machine: `make demo` and `make test`.
# Each creates .venv on CPython 3.12 (the functions' runtime) when missing and installs
# the project from requirements/dev.lock when the lock or pyproject.toml changed.
# PYTHON may name the interpreter; otherwise the first CPython 3.12 found is used
# (python3.12 on PATH, then pyenv's versions, then the usual system places).
PY312_CANDIDATES := $(PYTHON) python3.12 $(wildcard $(or $(PYENV_ROOT),$(HOME)/.pyenv)/versions/3.12*/bin/python3.12) /usr/local/bin/python3.12 /usr/bin/python3.12
PY312 := $(firstword $(foreach p,$(PY312_CANDIDATES),$(shell $(p) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' >/dev/null 2>&1 && echo $(p))))
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements/dev.lock
# Debian's Chromium and its WebDriver, for the page's real-browser test (see below).
BROWSER := /usr/bin/chromium /usr/bin/chromedriver
UV_LOCK := $(BIN)/uv pip compile --quiet --universal --python-version 3.12 --generate-hashes
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
# Bytecode is cached (__pycache__/, ignored by git and left out of every artifact by
# layers/build.py): each `pixflare` process a test starts then skips recompiling the
# project, about 0.1 s a process. The functions' own processes run with -B regardless.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: demo test lint audit synth layers bench lock clean mutate

# A .venv made by another Python (3.11 before this project moved to 3.12) is replaced.
$(BIN)/python:
	@test -n "$(PY312)" || { echo "make: CPython 3.12 not found (the Lambda runtime's version): install python3.12 or run make PYTHON=/path/to/python3.12" >&2; exit 1; }
	$(PY312) -m venv $(VENV)

$(STAMP): pyproject.toml $(LOCK) | $(BIN)/python
	@$(BIN)/python -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' || { echo "make: $(VENV) is not Python 3.12; recreating it"; rm -rf $(VENV); $(MAKE) --no-print-directory $(BIN)/python; }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/pixflare demo

# --dist loadfile: a module's tests share one worker, so each module-scoped local stack
# (and browser) starts once, not once per worker.
test: $(STAMP) $(BROWSER)
	$(BIN)/python -m pytest -n 2 --dist loadfile -q tests

# The page's test (tests/integration/test_page_in_browser.py) drives Debian's Chromium
# through Debian's chromedriver (no browser download). Installed here when either is
# missing: as root, or through sudo; nothing to do (and no apt) once both exist.
$(BROWSER) &:
	@command -v apt-get >/dev/null || { echo "make: the browser test needs Chromium and chromedriver at /usr/bin/chromium and /usr/bin/chromedriver (Debian: apt-get install chromium chromium-driver); no apt-get here, install them by hand" >&2; exit 1; }
	@if [ "$$(id -u)" = 0 ]; then sudo=; \
	elif command -v sudo >/dev/null; then sudo=sudo; \
	else echo "make: installing chromium and chromium-driver needs root: run 'apt-get install --no-install-recommends chromium chromium-driver' as root, then make test again" >&2; exit 1; fi; \
	echo "make: installing Debian's chromium and chromium-driver (for the browser test)"; \
	$$sudo apt-get update -qq && \
	$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
	@test -x /usr/bin/chromium && test -x /usr/bin/chromedriver || { echo "make: chromium or chromedriver still missing after apt-get install" >&2; exit 1; }

# Mutation testing of the core logic (engine, worker, crypto, verification, cleanup,
# analytics), configured in pyproject.toml [tool.mutmut]. Not part of test: it runs for
# hours. mutants/ keeps the results, so a second run only tests mutants of changed code
# (rm -rf mutants to start over). MUTATE_JOBS: parallel workers; MUTANTS: a name glob
# to run part of it, e.g. make mutate MUTANTS='lambdas.backup.crypto*'.
MUTATE_JOBS ?= 2
mutate: $(STAMP)
	$(BIN)/mutmut run --max-children $(MUTATE_JOBS) $(MUTANTS)
	$(BIN)/mutmut results
	$(BIN)/mutmut export-cicd-stats
	@$(BIN)/python -c 'import json; s = json.load(open("mutants/mutmut-cicd-stats.json")); \
	caught = s["killed"] + s["timeout"]; \
	checked = caught + s["survived"] + s["no_tests"] + s["suspicious"] + s["segfault"]; \
	print("mutation score {:.1f}% ({} of {} checked mutants killed or timed out; {survived} survived, {no_tests} without tests, {suspicious} suspicious; {total} mutants in all)".format(100 * caught / max(checked, 1), caught, checked, **s))'

# ruff and mypy are pinned by requirements/dev.lock, so a new release cannot fail a build.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Not part of lint: it needs PyPI's advisory service, which not every machine reaches.
# --strict: a dependency the advisory service could not look up fails the audit, so an
# unreachable service (a mirror without PyPI's JSON API) never reads as "no vulnerabilities".
audit: $(STAMP)
	$(BIN)/pip-audit --strict --skip-editable --progress-spinner off

synth: $(STAMP)
	$(BIN)/python -m infra.synth

layers: $(STAMP)
	$(BIN)/python -m layers.build

# Re-pin everything (uv, with hashes): the development environment from pyproject.toml,
# then each layer constrained by it, so the layers carry the versions the tests run.
lock: $(STAMP)
	$(UV_LOCK) pyproject.toml --extra infra --extra local --extra dev -o $(LOCK)
	$(UV_LOCK) layers/deps/requirements.in -c $(LOCK) -o layers/deps/requirements.lock
	$(UV_LOCK) layers/pillow/requirements.in -c $(LOCK) -o layers/pillow/requirements.lock
	$(UV_LOCK) layers/runtime/requirements.in -o layers/runtime/requirements.lock

bench: $(STAMP)
	$(BIN)/python bench/variants.py
	$(BIN)/python bench/backup.py
	$(BIN)/python bench/cron_scale.py
	$(BIN)/python bench/cold_start.py
	$(BIN)/python bench/upload_latency.py
	$(BIN)/python bench/local_stop.py

clean:
	rm -rf $(VENV) cdk.out layers/build .pytest_cache .mypy_cache .ruff_cache
