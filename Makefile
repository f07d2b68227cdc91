# The README's commands are targets here. Everything installs into .venv from the
# committed lock files, so a machine needs only Python 3.11+ and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install up migrate test lint fmt lock bench bench-rules bench-alerts bench-program bench-burden bench-scale bench-identities clean

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
	@echo "make bench-scale  every page and API call of a care team (500 patients) and of an admin"
	@echo "              over 100,000 patients with 90 days of readings: p50/p99 against 100 ms and 1 s"
	@echo "              (same needs, BENCH_ARGS: --seeded URL, --only NAME, --patients N)"
	@echo "make bench-burden  alert burden of the care-plan templates on 1,000 simulated patients"
	@echo "              over 90 days, through the rule engine's own evaluation (no database; BENCH_ARGS)"
	@echo "make bench-identities  how soon Mosquitto's dynamic security plugin drops a rotated or"
	@echo "              revoked device (a Mosquitto of its own, no database; BENCH_ARGS)"

# The install resolves nothing: every file it installs, the build backend included, is named
# and hash-pinned in a lock, and pip installs exactly those (--no-deps), so whichever pip a
# supported Python's venv brings (3.11's 23.2 to 3.13's 24.x) installs the same set, and no
# upstream release published after the lock was made can change or break it. (Letting pip
# resolve, even in --require-hashes mode, is what broke: pip 23.2 reads an extra such as
# amqtt's `pwdlib[argon2]` as a requirement of its own, finds a newer release than the
# lock's and refuses it.) `pip check` then proves the locked set is complete and consistent.
# The project itself is built by the locked setuptools (--no-build-isolation), not by
# whatever setuptools is newest on the day. Nothing is byte-compiled at install
# (--no-compile): Python compiles a module when it is first imported, and compiling every
# module of every package (most never imported: mypy's, playwright's) was a fifth of the
# install's time. tests/e2e/test_fresh_install.py does all this in new venvs of every
# supported Python found, so CI notices when it stops being true.
$(STAMP): requirements.lock requirements-dev.lock requirements-build.lock pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "rpm needs Python 3.11 or newer")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-compile --require-hashes \
		-r requirements-build.lock -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps \
		--no-build-isolation -e .
	$(BIN)/python -m pip check --disable-pip-version-check
	touch $(STAMP)

install: $(STAMP)

up: $(STAMP)
	$(BIN)/rpm up --demo

migrate: $(STAMP)
	$(BIN)/rpm migrate

# On every core (pytest-xdist), a test file to a process: a file's tests share its
# module fixtures (a service, a broker), and every test has databases of its own.
# PYTEST_ARGS='-n 0' runs it in one process.
test: $(STAMP)
	$(BIN)/python -m pytest -n auto --dist loadfile $(PYTEST_ARGS)

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

bench-scale: $(STAMP)
	$(BIN)/python -m benchmarks.scale $(BENCH_ARGS)

bench-burden: $(STAMP)
	$(BIN)/python -m benchmarks.burden $(BENCH_ARGS)

bench-identities: $(STAMP)
	$(BIN)/python -m benchmarks.identities $(BENCH_ARGS)

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Hashes pin every file; the dev lock is constrained by the runtime one so both agree, and the
# build lock pins pyproject.toml's build-system requirements. uv goes into .venv, not into
# the system's Python.
lock: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check 'uv>=0.5'
	$(BIN)/python -m uv pip compile pyproject.toml --universal --python-version 3.11 \
		--generate-hashes --quiet -o requirements.lock
	$(BIN)/python -m uv pip compile pyproject.toml --extra dev -c requirements.lock --universal \
		--python-version 3.11 --generate-hashes --quiet -o requirements-dev.lock
	$(BIN)/python -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"], sep="\n")' \
		| $(BIN)/python -m uv pip compile - --universal --python-version 3.11 \
		--generate-hashes --quiet -o requirements-build.lock

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
