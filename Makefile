# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LINT_PATHS := services schemas tests $(wildcard bench)

.PHONY: run test lint unit integration e2e faults soak bench schemas tools clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,test,lint]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/leadpipe dev

# System tools the tests use, from Debian's packages: promtool checks the Prometheus files and the
# prometheus server scrapes a live stack (tests/e2e/test_prometheus_live.py); chromium runs the
# website snippet in a real browser.
tools:
	@{ command -v promtool && command -v prometheus; } >/dev/null || { \
		echo "installing Debian's prometheus package for promtool and prometheus"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
	@command -v chromium >/dev/null || { \
		echo "installing Debian's chromium for the website snippet test"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

test: $(STAMP) tools lint
	$(BIN)/pytest -q

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

integration: $(STAMP)
	$(BIN)/pytest -q tests/integration

e2e: $(STAMP)
	$(BIN)/pytest -q tests/e2e

# The fault tests alone (they also run in `make test`), at their short size.
faults: $(STAMP)
	$(BIN)/pytest -q tests/faults tests/integration/test_score_recovery.py

# The fault tests (tests/faults, also part of `make test`) at soak size: hundreds of events per test,
# every kill, Redis restart and broker freeze repeated; prints the figures docs/reliability.md quotes.
soak: $(STAMP)
	LEADPIPE_SOAK=1 $(BIN)/pytest -q tests/faults

lint: $(STAMP)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy

schemas: $(STAMP)
	$(BIN)/python -m schemas.generate

bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m bench --events 20000

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
