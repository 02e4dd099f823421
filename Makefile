# llmtel: `make run` starts everything on an embedded broker and store; `make test` runs the suite.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help install run test lint format tools bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install llmtel with its test tools

run: install  ## run llmtel: embedded Kafka broker + worker + chDB under ./.llmtel (Ctrl-C stops)
	$(BIN)/llmtel up

tools:  ## install promtool, docker-compose and chromium (Debian packages) for the deploy and browser tests, if possible
	@if ! command -v promtool >/dev/null || ! command -v docker-compose >/dev/null || [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus docker-compose chromium fonts-liberation >/dev/null) \
	      || echo "tools: could not install promtool/docker-compose/chromium; their tests will be skipped"; \
	  else echo "tools: promtool/docker-compose/chromium missing and not root; their tests will be skipped"; fi; \
	fi

lint: install  ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install  ## apply ruff's formatting and fixes
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: install tools lint  ## install, then run the whole test suite (unit, integration, deploy)
	$(BIN)/python -m pytest

bench: install  ## throughput, naive baseline, alert latency and memory (python -m bench.run --help)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:  ## remove the virtual environment and local data
	rm -rf $(VENV) .llmtel .pytest_cache .ruff_cache *.egg-info
