# The two commands of the README: `make demo` and `make test`. Both create/refresh .venv first, from uv.lock.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# uv installs the locked versions (uv.lock) into .venv. Only python3 is needed: uv itself is bootstrapped into the
# venv with pip, at the version uv.lock pins for the dev extra (test_packaging.py checks the two agree).
UV_VERSION := 0.13.9
UV := $(BIN)/uv
# --frozen: install exactly uv.lock, never re-resolve (a stale lock fails instead: run `make lock`);
# --inexact: keep what uv does not manage (pip, and uv itself, which runs this command)
SYNC := UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --frozen --inexact

.PHONY: demo test lint bench bench-quick clean install lock

$(STAMP): pyproject.toml uv.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(UV) --version 2>/dev/null | grep -qx "uv $(UV_VERSION)" || \
		$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(SYNC) --extra dev --extra deploy
	touch $(STAMP)

install: $(STAMP)

# after changing the dependencies in pyproject.toml: re-resolve and commit uv.lock
lock: $(STAMP)
	$(UV) lock

demo: $(STAMP)
	$(BIN)/integration-pipelines demo

# Two pytest-xdist workers (the CI machine has 2 cores): 51 min for 971 tests in a fresh clone here (2026-12-07),
# where one process took 80-89 min. The stack tests (a whole `dagster dev`) are marked xdist_group("stack") and
# `--dist loadgroup` keeps them on one worker (conftest.py carries xdist's group into the node id pytest 9 reads),
# so two stacks never compete for the cores. TEST_WORKERS=0 runs everything in this process. The slowest 30 tests
# are listed.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup --durations=30

bench: $(STAMP)
	$(SYNC) --extra dev --extra bench
	$(BIN)/python -m benchmarks.run

bench-quick: $(STAMP)
	$(SYNC) --extra dev --extra bench
	$(BIN)/python -m benchmarks.run --quick

lint: $(STAMP)
	$(BIN)/ruff check integration_pipelines integration_pipelines_tests benchmarks

clean:
	rm -rf .data $(VENV)
