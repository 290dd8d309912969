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

# One process by default. TEST_WORKERS=2 runs two pytest-xdist workers: 41 min instead of 65 on 2 cores, but one
# property test (test_money_properties, a QuickBooks token lock held past 120 s) failed once that way and its cause
# is not proven fixed, so CI stays on one process for now. The stack tests are marked xdist_group("stack") to share
# a worker, which xdist 3.8 cannot honour under pytest 9.2 (it renames item._nodeid, which pytest 9 no longer
# reads). The slowest 30 tests are listed.
TEST_WORKERS ?= 0
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
