# The README's commands. Everything runs from the project's own virtual
# environment, which the first target to need it creates: Python 3.11+ and
# Node 20+ are the only prerequisites.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
UV_VERSION := 0.13.9
# The CDK CLI pinned by package-lock.json, the one every synth and deploy goes through.
CDK := node_modules/.bin/cdk
# `make synth CONTEXT="auth=off pollingConcurrency=50"`: CDK context, as -c key=value each.
CONTEXT ?=
CDK_CONTEXT := $(foreach pair,$(CONTEXT),--context $(pair))
# `make deploy APPROVAL=never` (CI) skips CDK's prompt for security-broadening changes.
APPROVAL ?= broadening
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export PYTHONPATH := $(CURDIR)/functions:$(CURDIR)

.PHONY: dev test check fmt synth bootstrap deploy destroy smoke bench bench-quick readme cost clean

## Run the project locally; `make dev AUTH=off` runs it without auth (a throwaway demo),
## `make dev DISORDER=on` (or DISORDER=<seed>, to replay) with AWS's disorder (local/disorder.py).
dev: $(VENV)/.synced
	$(PY) -m local $(if $(AUTH),--auth $(AUTH)) $(if $(DISORDER),--disorder $(DISORDER))

## Lint, type-check and run the whole test suite.
test: $(VENV)/.synced node_modules/.installed check
	$(PY) -m pytest

check: $(VENV)/.synced
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

fmt: $(VENV)/.synced
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

## Write the CloudFormation templates to cdk.out/ through the CDK CLI (no credentials, no Docker).
synth: $(VENV)/.synced node_modules/.installed
	$(CDK) synth --quiet $(CDK_CONTEXT)
	@echo "templates written to cdk.out/"

## Once per account and region: the bucket and roles cdk deploy uses (needs AWS credentials).
bootstrap: $(VENV)/.synced node_modules/.installed
	$(CDK) bootstrap $(CDK_CONTEXT)

## Deploy every stack and write the endpoints file (needs AWS credentials, and Docker for SSE).
deploy: $(VENV)/.synced node_modules/.installed
	@mkdir -p .local
	$(PY) -m infra.preflight $(CONTEXT)
	$(CDK) deploy --all --require-approval $(APPROVAL) $(CDK_CONTEXT) \
		--outputs-file .local/deployed-outputs.json

## Delete the stacks (the events table is retained on purpose: see the README).
destroy: $(VENV)/.synced node_modules/.installed
	$(CDK) destroy --all $(CDK_CONTEXT)

## The end-to-end suite against a deployment (or OUTPUTS=.local/outputs.json: a running make dev).
OUTPUTS ?= .local/deployed-outputs.json
smoke: $(VENV)/.synced
	$(PY) -m tests.smoke $(OUTPUTS)

## Measure the three transports (minutes): bench/results.json, docs/TRADEOFFS.md, docs/charts/,
## and the README's comparison table.
bench: $(VENV)/.synced
	$(PY) -m bench

## Rewrite the README's generated tables (comparison, cost) from bench/results.json and the code.
readme: $(VENV)/.synced
	$(PY) -m bench.readme

## The same in seconds with small numbers, into .local/bench-quick/ (what the tests run).
bench-quick: $(VENV)/.synced
	$(PY) -m bench --quick --out .local/bench-quick

## Monthly AWS cost of each transport: make cost CLIENTS=10000 EVENTS_PER_MINUTE=6 CHANNELS=1
## (BACKPLANE=log: SSE tasks poll the log instead of a broker pushing to them).
cost: $(VENV)/.synced
	$(PY) -m bench.cost $(if $(CLIENTS),--clients $(CLIENTS)) \
		$(if $(EVENTS_PER_MINUTE),--events-per-minute $(EVENTS_PER_MINUTE)) \
		$(if $(CHANNELS),--channels $(CHANNELS)) $(if $(BACKPLANE),--backplane $(BACKPLANE)) \
		$(COST_ARGS)

# uv is bootstrapped by pip into the project's venv, then keeps it in step with uv.lock.
$(VENV)/.synced: pyproject.toml uv.lock
	@test -x $(UV) || { $(PYTHON) -m venv $(VENV) && $(VENV)/bin/pip install -q uv==$(UV_VERSION); }
	$(UV) sync --frozen --python $(PY)
	@# The venv finds functions/ and the project's own packages without PYTHONPATH, so
	@# `.venv/bin/python -m local` and `-m client` work as the README shows them. Found
	@# beside the venv (its sys.prefix), not at this path: a copy of the checkout that links
	@# this venv (the transport removal test) runs its own code, not this checkout's.
	@echo 'import os, sys; sys.path.extend([os.path.join(os.path.dirname(sys.prefix), "functions"), os.path.dirname(sys.prefix)])' > \
		"$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/realtime-delivery.pth"
	@touch $@

# npm ci installs exactly package-lock.json's CLI.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

clean:
	rm -rf $(VENV) node_modules cdk.out .local .mypy_cache .ruff_cache .pytest_cache
