# Two set-up commands for a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export RAY_AUTH_MODE ?= disabled

$(BIN)/a2v: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

.PHONY: install demo test test-fast test-soak lint bench clean
install: $(BIN)/a2v

demo: install  ## synthetic archive -> pretrain -> finetune -> label, all on the tiny preset
	$(BIN)/a2v demo --out demo_out

test: install  ## the whole suite (slow end-to-end tests included)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest -q

test-fast: install
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest -q -m "not slow"

test-soak: install  ## multi-hour inputs (label memory on a 4-hour file), not part of `make test`
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest -q -m soak

lint: install
	$(BIN)/ruff check a2v_core pipelines tune bench tests
	$(BIN)/ruff format --check a2v_core pipelines tune bench tests

bench: install
	$(BIN)/pip install -q -e ".[dev,bench]"
	$(BIN)/python bench/model_throughput.py
	$(BIN)/python bench/ingest.py

clean:
	rm -rf demo_out .a2v-local mlflow.db
