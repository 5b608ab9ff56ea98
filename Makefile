# streamvae: `make demo` and `make test` work on a fresh machine (Python >= 3.11 on PATH).
PYTHON ?= python3
VENV ?= .venv
# torch is installed first, on its own, when absent: a plain `torch` requirement would pull
# several GB of CUDA wheels. Override for a GPU build, e.g. TORCH_SPEC="torch==2.13.0 --index-url ...".
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check

.PHONY: install demo test lint unit bench clean prometheus spark

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Creates or refreshes the virtualenv: torch when absent, then the package with its extras.
install: $(BIN)/python
	@$(BIN)/python -c "import torch" 2>/dev/null || $(PIP) install -q $(TORCH_SPEC)
	$(PIP) install -q -e ".[embedded,dev]"

demo: install
	$(BIN)/streamvae demo

lint: install
	$(BIN)/ruff check streamvae tests deploy
	$(BIN)/ruff format --check streamvae tests deploy
	$(BIN)/lint-imports
	$(BIN)/mypy

# promtool (Debian's prometheus package) for the rule tests; installed when absent and apt-get
# can run (as root); elsewhere the rule tests skip (and fail under CI=true).
prometheus:
	@command -v promtool >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null; } || \
		echo "promtool not installed: the Prometheus rule tests will skip"

# PySpark (the spark extra) and a Java runtime for the Spark backfill test: Java from Debian's
# packages when absent and apt-get can run (as root); elsewhere the Spark test skips
spark: install
	$(PIP) install -q -e ".[embedded,dev,spark]"
	@command -v java >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends default-jre-headless >/dev/null; } || \
		echo "java not installed: the Spark test will skip"

test: lint prometheus spark
	$(BIN)/python -m pytest $(PYTEST_ARGS)

unit: install
	$(BIN)/python -m pytest tests/unit tests/contract $(PYTEST_ARGS)

bench: install
	$(PIP) install -q -e ".[embedded,dev,bench]"
	$(BIN)/python -m pytest -m benchmark tests/benchmarks -s $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .streamvae .pytest_cache .ruff_cache .mypy_cache bench-results
