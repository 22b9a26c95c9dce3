# The user's vocabulary: build-model, test, bench, serve, lint. Every target sets itself up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

TIME_BUDGET ?= 60
LATENCY_BUDGET_US ?= 50
SIZE_BUDGET_KB ?= 256
SEED ?= 0
FULL ?= 0
PYTEST_ARGS ?=

.PHONY: install build-model test bench serve lint clean retrain-demo

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[factory,central,spark,dev]"
	touch $(STAMP)

build-model: $(STAMP)
	$(BIN)/edgeseg-factory build-default --time-budget-s $(TIME_BUDGET) \
		--latency-budget-us $(LATENCY_BUDGET_US) --size-budget-kb $(SIZE_BUDGET_KB) --seed $(SEED)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m benchmarks $(if $(filter 1,$(FULL)),--full,)
	$(BIN)/python -m benchmarks.clv_default --time-budget-s $(TIME_BUDGET) --json benchmarks/reports/clv_default.json

# A model that keeps learning: monthly retrains, the promotion gate, canary rollouts with automatic
# rollback, on a simulated 4-store fleet against a real central (scripts/retrain_demo.py).
retrain-demo: $(STAMP)
	$(BIN)/python scripts/retrain_demo.py

serve: $(STAMP)
	$(BIN)/edgeseg-central serve

lint: $(STAMP)
	$(BIN)/ruff check factory edge_runtime central benchmarks tests
	$(BIN)/ruff format --check factory edge_runtime central benchmarks tests
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
