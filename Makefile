# On a fresh machine: `make install`, then `make run` (the service) or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint format bench soak fuzz clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: install
	$(BIN)/python -m service serve

test: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The long variants of the reliability tests: 1,000 rounds of each race (one app, and three
# `serve --workers` processes), a long stateful run.
soak: install
	SOAK=1 $(BIN)/pytest -q tests/e2e/test_races.py tests/e2e/test_mark_paid_races.py tests/e2e/test_done_batch.py tests/e2e/test_stateful.py tests/multiprocess

# The long OpenAPI fuzz run against a real server: 450 generated requests for each of the 14
# documented operations (6,300) plus the nasty-value sweep; `make test` runs 20 each. About a
# minute on 2 cores. FUZZ_SEED=N replays a run; FUZZ_REPORT=FILE keeps its summary line.
fuzz: install
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-450} $(BIN)/pytest -v tests/fuzz

# Every benchmark runs even when one before it misses a target (exit status 1); `make bench`
# fails if any did. About 8 minutes the first time (it generates a 1,000,000-event log, kept
# in bench/.cache/ for the rebuild and HTTP benchmarks), 6-9 after (9 in a slow phase of the
# VM; bench.workers runs four services, SQLite and PostgreSQL, about 3 of them; bench.metrics,
# metrics on against off, about 3).
# BENCH_HTTP_FLAGS=--quick shortens the HTTP benchmark to about a minute.
bench: install
	status=0; \
	$(BIN)/python bench/append.py || status=1; \
	$(BIN)/python -m bench.pg_append || status=1; \
	$(BIN)/python bench/rebuild.py || status=1; \
	$(BIN)/python -m bench.http $(BENCH_HTTP_FLAGS) || status=1; \
	$(BIN)/python -m bench.done_batch || status=1; \
	$(BIN)/python -m bench.workers || status=1; \
	$(BIN)/python -m bench.metrics || status=1; \
	$(BIN)/python -m bench.webhooks || status=1; \
	exit $$status

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
