# Two set-up commands on a fresh machine with python3, node and npm: `make synth` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3.11
ENV ?= dev
PORT ?= 8000
VENV := .venv
PY := $(VENV)/bin/python
CDK := node_modules/.bin/cdk
CDK_FLAGS := --no-notices -c env=$(ENV)

export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 18,20
export CDK_DISABLE_CLI_TELEMETRY := true
export AWS_DEFAULT_REGION ?= us-east-1

.PHONY: help venv node lock synth ls diff diff-readonly doctor destroy deploy test test-fast lint typecheck unit serve-local local-pipeline cartoonize-local web-local clean

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements-dev.txt constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt -c constraints.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

venv: $(VENV)/.installed  ## Create .venv with the pinned Python dependencies

node: node_modules/.installed  ## Install the pinned aws-cdk CLI into node_modules

lock: venv  ## Regenerate every runtime's lock with hashes (locks.toml -> runtime/*/requirements.txt; uv, needs PyPI)
	$(PY) scripts/locks.py

synth: venv node  ## Synthesize every stack into cdk.out/ (no AWS credentials needed)
	$(CDK) synth --quiet $(CDK_FLAGS)
	$(PY) scripts/summarize_synth.py cdk.out

ls: venv node  ## List the stacks of ENV
	$(CDK) ls $(CDK_FLAGS)

diff: venv node  ## cdk diff against the deployed stacks (needs credentials)
	$(CDK) diff --all $(CDK_FLAGS)

diff-readonly: venv node  ## cdk diff of templates via the read-only lookup role (no change set), as pull requests run it
	$(CDK) diff --all --method=template $(CDK_FLAGS)

doctor: venv  ## Read-only checks a deploy and first run need (credentials; bootstrap, quotas, roles, token, models, alerts)
	$(PY) -m infra.doctor --env $(ENV)

destroy: venv node  ## cdk destroy --all (asks first; docs/operations.md lists what retain_data keeps)
	$(CDK) destroy --all $(CDK_FLAGS)

deploy: venv node  ## cdk deploy --all (needs credentials and a bootstrapped account)
	$(CDK) deploy --all $(CDK_FLAGS)

lint: venv  ## ruff lint and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: venv  ## mypy on app.py, infra/ and runtime/
	$(VENV)/bin/mypy app.py infra runtime

unit: venv  ## The pytest suite only
	$(PY) -m pytest

test: lint typecheck unit  ## Lint, type checks and the whole suite

test-fast: venv  ## Constructs, config/doctor and runtime unit tests (no whole-app synthesis, nothing slow)
	$(PY) -m pytest -m "(components or unit or runtime) and not slow and not gpu"

serve-local: venv  ## Run the Stable Diffusion server on CPU with a tiny random pipeline (port 8080)
	$(PY) -m runtime.endpoint.serve --tiny-random --device cpu --port 8080

local-pipeline: venv  ## Run the StyleGAN2 pipeline steps locally on a tiny synthetic dataset
	$(PY) -m runtime.pipeline.local_run --workdir local-run

cartoonize-local: venv  ## Cartoonize a generated 2 s clip with audio (models/cartoonizer/model.onnx, else random weights)
	mkdir -p local-run/cartoonizer
	$(PY) -m runtime.cartoonizer.synthetic local-run/cartoonizer/clip.mp4 --width 320 --height 180 --seconds 2
	if [[ -f models/cartoonizer/model.onnx ]]; then model=(--model models/cartoonizer/model.onnx); \
	else echo "no models/cartoonizer/model.onnx (see docs/cartoonizer.md): using random weights"; model=(--tiny-random); fi; \
	$(PY) -m runtime.cartoonizer local-run/cartoonizer/clip.mp4 local-run/cartoonizer/clip-cartoon.mp4 "$${model[@]}" --side-by-side
	@echo "wrote local-run/cartoonizer/clip-cartoon.mp4 (original | cartoon) and its .progress.json"

web-local: venv  ## The web studio on 127.0.0.1:PORT, default 8000 (moto S3/DynamoDB, sign-in stub alice/bob, tiny models on CPU)
	$(PY) -m runtime.web.local --port $(PORT) $(WEB_LOCAL_FLAGS)

clean:  ## Remove build outputs (keeps .venv and node_modules)
	rm -rf cdk.out .pytest_cache .mypy_cache .ruff_cache local-run
