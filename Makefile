# lstmad — `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
BROKER := tests/kafka_broker
JARS   := $(BROKER)/target/lib/.fetched
PYTEST_ARGS ?=

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade "pip>=25.1"
	$(PIP) install -q -e ".[train]" --group dev
	touch $@

install: $(VENV)/.installed ## Create .venv with the daemon, the trainer and the dev tools

$(JARS): $(BROKER)/pom.xml
	mvn -B -q -f $(BROKER)/pom.xml dependency:copy-dependencies -DoutputDirectory=target/lib -DincludeScope=runtime
	touch $@

kafka-jars: $(JARS) ## Fetch the Apache Kafka broker's jars from Maven Central (cached in ~/.m2)

system-deps: ## Install Prometheus and promtool from Debian if missing (needs root)
	@command -v promtool >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	  else echo "promtool missing: sudo apt-get install prometheus" >&2; fi; }

lint: install ## ruff (lint + format check) and mypy on streamer/
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy streamer

fmt: install ## Apply ruff's formatter and autofixes
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: install kafka-jars system-deps lint ## Lint, then every test, including those against a real Kafka broker
	$(PY) -m pytest $(PYTEST_ARGS)

demo: install kafka-jars ## Local Kafka + bundled ops streams with anomalies + the daemon: prints alerts (~1 min)
	$(VENV)/bin/lstmad demo

bench: install kafka-jars ## Every benchmark (< 20 min): table on stdout, JSON in bench/results/latest.json
	$(PY) -m bench all

kafka: install kafka-jars ## Run a local single-node Kafka on 127.0.0.1 until Ctrl-C
	$(PY) -m streamer.localkafka

clean: ## Remove the venv, caches and fetched jars
	rm -rf $(VENV) $(BROKER)/target .pytest_cache .mypy_cache .ruff_cache

.PHONY: help install kafka-jars system-deps lint fmt test demo bench kafka clean
