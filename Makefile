# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck bench clean

# uv (put into the venv by its pip) installs in seconds what pip takes a minute for; tools/install.py hands it
# this machine's pip configuration (indexes, find-links, constraints, certificates), and falls back to pip.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python tools/install.py -e ".[dev]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/ops up

# The suite mostly waits on servers and subprocesses: three workers (each with its own Prefect test server and,
# on its first PostgreSQL case, its own throwaway PostgreSQL) finish it in about half the time even on two cores.
# A test file stays on one worker, so a module's shared servers start once.  TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 3

test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy engine registry flows

# Every benchmarks/*.py (not _private, not BENCHMARK = False) at full size, then one table of all their figures.
bench: $(STAMP)
	$(BIN)/python benchmarks/_table.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .ops-data
