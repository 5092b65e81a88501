# Two commands set up a fresh machine (Python 3.11 + pip) and do the work:
#   make run   - the whole benchmark on the embedded default config (offline, CPU)
#   make test  - the test suite (unit tests + the workflow on configs/smoke.yaml)
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
CORES  ?= all
STAMP  := $(VENV)/.installed

.PHONY: run test test-unit lint dry-run bench clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11 or run 'make PYTHON=python3 ...'"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/snakemake --cores $(CORES)

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The unit tier: no workflow run, no SLURM cluster (about a minute on 2 cores)
test-unit: $(STAMP)
	$(BIN)/python -m pytest -q -m "not workflow and not slurm"

lint: $(STAMP)
	$(BIN)/ruff check src tests workflow benchmarks
	$(BIN)/ruff format --check src tests workflow benchmarks
	$(BIN)/snakefmt --check Snakefile rules
	$(BIN)/snakemake --lint --cores 1

dry-run: $(STAMP)
	$(BIN)/snakemake -n --cores $(CORES)

BENCH := $(VENV)/.bench

$(BENCH): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(BENCH)

bench: $(BENCH)
	$(BIN)/python benchmarks/run.py --only pipeline planning streaming peer convergence scale datafree

clean:
	rm -rf results .snakemake
