PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install serve test lint types layers pytest fuzz fuzz-http fuzz-vw bench bench-instructions clean

# One stamp per install, so each target installs only what it runs: `make serve` the runtime
# (`pip install -e .`), `make test` adds the test extra, `make bench` the bench extra. Each
# stamp is older than pyproject.toml only when its install must run again; a later target adds
# what is missing without reinstalling what an earlier one put there.
CREATED := $(VENV)/.created
RUNTIME := $(VENV)/.runtime
TOOLS := $(VENV)/.test
BENCH_TOOLS := $(VENV)/.bench

$(CREATED):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	touch $(CREATED)

$(RUNTIME): pyproject.toml $(CREATED)
	$(BIN)/pip install --quiet -e .
	touch $(RUNTIME)

# The test extra takes in the bench extra (the suite checks the bench's profiler too).
$(TOOLS): pyproject.toml $(RUNTIME)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(TOOLS) $(BENCH_TOOLS)

$(BENCH_TOOLS): pyproject.toml $(RUNTIME)
	$(BIN)/pip install --quiet -e '.[bench]'
	touch $(BENCH_TOOLS)

# Debian's chromium, for the dashboard's browser test only (serving does not need it).
BROWSER := $(VENV)/.browser
$(BROWSER): scripts/install-chromium.sh $(TOOLS)
	sh scripts/install-chromium.sh
	touch $(BROWSER)

# everything: the runtime, the test and the bench tooling
install: $(TOOLS) $(BENCH_TOOLS)

serve: $(RUNTIME)
	$(BIN)/banditd serve --db banditd.db

lint: $(TOOLS)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(TOOLS)
	$(BIN)/mypy

layers: $(TOOLS)
	$(BIN)/lint-imports

pytest: $(TOOLS) $(BROWSER)
	$(BIN)/pytest -q -n 2 -p no:cacheprovider

test: lint types layers pytest

# the longer runs of the suite's two searches: schemathesis over the HTTP API, and VW's boundary
fuzz: fuzz-http fuzz-vw

# schemathesis against a live server, 200 cases per operation and key mode (the suite sends 24)
FUZZ_CASES ?= 200
fuzz-http: $(TOOLS)
	BANDITD_FUZZ_CASES=$(FUZZ_CASES) $(BIN)/pytest -q -s -p no:cacheprovider tests/e2e/test_fuzz.py

# make bench BENCH_ARGS=--quick (see docs/bench.md for the flags)
bench: $(BENCH_TOOLS)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# a longer run of the VW boundary's crash search (docs/vw-boundary.md); the suite runs 240 examples
VW_FUZZ_EXAMPLES ?= 10000
fuzz-vw: $(TOOLS)
	VW_FUZZ_EXAMPLES=$(VW_FUZZ_EXAMPLES) $(BIN)/pytest -q -p no:cacheprovider \
		tests/policies/test_vw_boundary.py -k survives

# instructions per request and per learned event, counted by callgrind (needs valgrind)
bench-instructions: $(BENCH_TOOLS)
	$(BIN)/python -m bench.instructions

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
