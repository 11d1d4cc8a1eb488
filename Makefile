# Two commands: `make demo` runs the main job, `make test` runs the checks. Both build a
# local virtual environment (.venv) from pyproject.toml on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck browser java bench bench-national clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,spark]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/koble demo --out demo-out

lint: $(STAMP)
	$(BIN)/ruff check koble tests benchmarks
	$(BIN)/ruff format --check koble tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

# The HTML reports are tested in a real headless browser (tests/test_reports_browser.py):
# Debian's Chromium and ChromeDriver, installed here when missing (CI runs as root on a
# fresh machine). Without them those tests fail; they never skip.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	fi

# The Spark engine's tests (tests/linkage/test_engine_spark*.py and others) need Java 17+: installed
# here when missing (Debian's headless JRE). Without it those tests fail; they never skip.
java:
	@if ! command -v java >/dev/null; then \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless; \
	fi

test: lint typecheck browser java
	$(BIN)/pytest

# Every benchmark script at a size that runs in about 10 minutes on 2 cores; the national
# sizes quoted in benchmarks/README.md are `make bench-national` (about 40 minutes).
bench: $(STAMP)
	$(BIN)/python benchmarks/bench_identifiers.py
	$(BIN)/python benchmarks/bench_synth.py --persons 100000
	$(BIN)/python benchmarks/bench_pseudonym.py --n 5500000
	$(BIN)/python benchmarks/bench_anonymity.py --skip-scale
	$(BIN)/python benchmarks/bench_blind.py
	$(BIN)/python benchmarks/bench_service.py --seconds 10
	$(BIN)/python benchmarks/bench_linkage.py --quick
	$(BIN)/python benchmarks/bench_resolve.py

bench-national: $(STAMP)
	$(BIN)/python benchmarks/bench_synth.py --national
	$(BIN)/python benchmarks/bench_pseudonym.py
	$(BIN)/python benchmarks/bench_anonymity.py
	$(BIN)/python benchmarks/bench_service.py --sweep
	$(BIN)/python benchmarks/bench_linkage.py --repeat 3
	$(BIN)/python benchmarks/bench_resolve.py --speed

clean:
	rm -rf $(VENV) demo-out .mypy_cache .ruff_cache .pytest_cache .hypothesis .pytest_artifacts
