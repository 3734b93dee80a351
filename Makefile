PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install serve test lint types layers pytest fuzz fuzz-http fuzz-vw bench bench-instructions clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

# Debian's chromium, for the dashboard's browser test only (serving does not need it).
BROWSER := $(VENV)/.browser
$(BROWSER): scripts/install-chromium.sh $(STAMP)
	sh scripts/install-chromium.sh
	touch $(BROWSER)

install: $(STAMP)

serve: $(STAMP)
	$(BIN)/banditd serve --db banditd.db

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP)
	$(BIN)/mypy

layers: $(STAMP)
	$(BIN)/lint-imports

pytest: $(STAMP) $(BROWSER)
	$(BIN)/pytest -q -n 2 -p no:cacheprovider

test: lint types layers pytest

# the longer runs of the suite's two searches: schemathesis over the HTTP API, and VW's boundary
fuzz: fuzz-http fuzz-vw

# schemathesis against a live server, 200 cases per operation and key mode (the suite sends 24)
FUZZ_CASES ?= 200
fuzz-http: $(STAMP)
	BANDITD_FUZZ_CASES=$(FUZZ_CASES) $(BIN)/pytest -q -s -p no:cacheprovider tests/e2e/test_fuzz.py

# make bench BENCH_ARGS=--quick (see docs/bench.md for the flags)
bench: $(STAMP)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# a longer run of the VW boundary's crash search (docs/vw-boundary.md); the suite runs 240 examples
VW_FUZZ_EXAMPLES ?= 10000
fuzz-vw: $(STAMP)
	VW_FUZZ_EXAMPLES=$(VW_FUZZ_EXAMPLES) $(BIN)/pytest -q -p no:cacheprovider \
		tests/policies/test_vw_boundary.py -k survives

# instructions per request and per learned event, counted by callgrind (needs valgrind)
bench-instructions: $(STAMP)
	$(BIN)/python -m bench.instructions

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
