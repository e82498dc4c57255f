# The two commands that matter: `make demo` and `make test`. Both set up .venv when needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
CONFIG ?= config/example.toml
# No telemetry, ever, from anything these targets run.
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: setup demo test check bench docs clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,dev]"
	@touch $(STAMP)

setup: $(STAMP)

# The demo keeps Prefect's per-task log lines quiet; the run's summary is printed at the end.
demo: setup
	$(BIN)/digest subscribers import config/sample/subscribers.csv --config $(CONFIG)
	PREFECT_LOGGING_LEVEL=$${PREFECT_LOGGING_LEVEL:-WARNING} $(BIN)/digest run --config $(CONFIG)

# The suite runs in parallel, one worker per core up to four (each worker starts its own Prefect
# test harness and, when needed, its own PostgreSQL server); TEST_WORKERS=1 runs it in one.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); [ $$n -gt 4 ] && n=4; echo $$n)

test: setup
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist worksteal

check: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: setup
	$(BIN)/python bench/run.py

docs: setup
	$(BIN)/digest config reference > docs/configuration.md

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
