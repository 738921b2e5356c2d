# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
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
