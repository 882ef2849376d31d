# Two entry points that do all set-up on a fresh machine (see README.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

$(BIN)/hlae: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[aeon,dev]"
	touch $(BIN)/hlae

.PHONY: install demo test lint
install: $(BIN)/hlae

demo: install
	$(BIN)/hlae demo --out hlae-demo

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check hlae tests benchmarks
