# Two commands do all set-up on a fresh machine:
#   make demo   — the paper's overload experiment live on one machine (Kafka, engine simulator,
#                 sidecar, Faust worker, scraper), against no admission and a rate limiter;
#                 writes var/demo/report.md with the paper's figures
#   make test   — run the test suite (unit, property, and integration on a real broker)
# Both create .venv and fetch what they need (PyPI packages, Kafka jars from Maven Central).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench kafka clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/tokenpools dev kafka --fetch-only
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/tokenpools experiment overload --out var/demo
	@echo "report: var/demo/report.md (figures beside it)"

test: $(STAMP)
	$(BIN)/python -m pytest -q -ra $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

bench: $(STAMP)
	for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

kafka: $(STAMP)
	$(BIN)/tokenpools dev kafka

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis *.egg-info
