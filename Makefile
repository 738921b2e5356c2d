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

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy engine registry flows

bench: $(STAMP)
	$(BIN)/python benchmarks/approval_latency.py
	$(BIN)/python benchmarks/reorder_check.py
	$(BIN)/python benchmarks/drill_alerts.py
	$(BIN)/python benchmarks/operations_report.py

clean:
	rm -rf $(VENV) .ops-data
