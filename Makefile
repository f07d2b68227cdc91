# The README's commands are targets here. Everything installs into .venv from the
# committed lock files, so a machine needs only Python 3.11+ and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install up migrate test lint fmt lock bench bench-rules bench-alerts bench-program clean

help:
	@echo "make up       install, then run the whole service (embedded database and broker unless"
	@echo "              configured; on the embedded database, with the demo patients, once)"
	@echo "make test     install, then run the whole test suite"
	@echo "make lint     ruff and mypy"
	@echo "make fmt      format the code"
	@echo "make migrate  apply database migrations"
	@echo "make lock     re-resolve requirements*.lock from pyproject.toml"
	@echo "make bench    ingest benchmark: 200,000 readings through a Mosquitto of its own into"
	@echo "              a throwaway database on RPM_BENCH_DATABASE_URL (BENCH_ARGS: more options)"
	@echo "make bench-rules  rule-engine benchmark: alert latency at 1,000 readings/s and the"
	@echo "              missed-readings check over 100,000 patients (same needs, BENCH_ARGS)"
	@echo "make bench-alerts  alerts benchmark: crisis reading to SMS at a fake Twilio at 1,000"
	@echo "              readings/s, and the worklist query over 100,000 alerts (same needs, BENCH_ARGS)"
	@echo "make bench-program  adherence worklist, billing periods and reminder scan over 5,000"
	@echo "              patients with a year of readings each (same needs, BENCH_ARGS)"

$(STAMP): requirements.lock requirements-dev.lock pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "rpm needs Python 3.11 or newer")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

up: $(STAMP)
	$(BIN)/rpm up --demo

migrate: $(STAMP)
	$(BIN)/rpm migrate

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Needs mosquitto and a PostgreSQL server (default postgresql://postgres@127.0.0.1:5432/postgres);
# see docs/benchmarks.md.
bench: $(STAMP)
	$(BIN)/python -m benchmarks.ingest $(BENCH_ARGS)

bench-rules: $(STAMP)
	$(BIN)/python -m benchmarks.rules $(BENCH_ARGS)

bench-alerts: $(STAMP)
	$(BIN)/python -m benchmarks.alerts $(BENCH_ARGS)

bench-program: $(STAMP)
	$(BIN)/python -m benchmarks.program $(BENCH_ARGS)

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Hashes pin every file; the dev lock is constrained by the runtime one so both agree.
lock:
	$(PYTHON) -m pip install --quiet --disable-pip-version-check 'uv>=0.5'
	$(PYTHON) -m uv pip compile pyproject.toml --universal --python-version 3.11 \
		--generate-hashes --quiet -o requirements.lock
	$(PYTHON) -m uv pip compile pyproject.toml --extra dev -c requirements.lock --universal \
		--python-version 3.11 --generate-hashes --quiet -o requirements-dev.lock

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
