# Two commands set up a fresh machine (Python 3.11 + pip) and do the work:
#   make run   - the whole benchmark on the embedded default config (offline, CPU)
#   make test  - the test suite (unit tests + the workflow on configs/smoke.yaml)
# and two that refresh what the repository shows before anything runs:
#   make figures - `make run`, then its figures copied into docs/figures/ (shown in README)
#   make docs    - docs/outputs.md regenerated from stealbench.report.columns
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
CORES  ?= all
STAMP  := $(VENV)/.installed

.PHONY: run test test-unit lint dry-run bench clean figures docs reproduce costs

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11 or run 'make PYTHON=python3 ...'"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/snakemake --cores $(CORES)

# Only the default config's figures: they are the ones the README's numbers come from.
figures: run
	rm -rf docs/figures
	mkdir -p docs/figures/accuracy_vs_budget
	cp results/figures/*.png docs/figures/
	cp results/figures/accuracy_vs_budget/*.png docs/figures/accuracy_vs_budget/

docs: $(STAMP)
	$(BIN)/python -m stealbench.report.columns > docs/outputs.md.tmp
	mv docs/outputs.md.tmp docs/outputs.md

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
	$(BIN)/python benchmarks/run.py --only pipeline planning streaming peer convergence remote scale datafree

# The per-architecture costs the SLURM resources are computed from, measured on this machine's
# CPU (src/stealbench/config/costs.json; on a GPU machine: benchmarks/costs.py --device cuda)
costs: $(STAMP)
	nice $(BIN)/python benchmarks/costs.py --device cpu

# Every configs/reproduce/*.yaml in its own results/reproduce/<name>/, then the README's
# "published vs stealbench" table (benchmarks/reproduce.py --report-only: the table alone)
reproduce: $(STAMP)
	$(BIN)/python benchmarks/reproduce.py --cores $(CORES)

clean:
	rm -rf results .snakemake
