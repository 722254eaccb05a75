# Two entry points for people: `make serve` and `make test`. Both set up .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
BUNDLE ?= artifacts/default

.PHONY: serve test test-fast lint bench train-default clean

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "torch==2.13.0"
	$(BIN)/pip install -q -e ".[train,dev]"
	touch $@

serve: $(BIN)/.installed
	TAP_BUNDLE_PATH=$(BUNDLE) $(BIN)/tap-restore serve --host 0.0.0.0 --port $(PORT)

# What CI runs (.ci/run): the integration tests' system programs where this machine can install them, then every test.
test: $(BIN)/.installed
	bash .ci/system-deps.sh
	$(BIN)/pytest -q

# For developers, a few minutes: no containers, browsers or real Prometheus, no long training or export tests.
test-fast: $(BIN)/.installed
	$(BIN)/pytest -q -m "not slow and not integration"

lint: $(BIN)/.installed
	$(BIN)/ruff check .

bench: $(BIN)/.installed
	$(BIN)/python -m bench.run_all --quick

train-default: $(BIN)/.installed
	PATH=$(abspath $(BIN)):$$PATH bash configs/default/train.sh

clean:
	rm -rf $(VENV) .pytest_cache
