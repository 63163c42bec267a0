# The README's commands. Everything runs from the project's own virtual
# environment, which the first target to need it creates: Python 3.11+ and
# Node 20+ are the only prerequisites.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
UV_VERSION := 0.13.9
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export PYTHONPATH := $(CURDIR)/functions:$(CURDIR)

.PHONY: dev test check fmt synth deploy bench bench-quick cost clean

## Run the project locally; `make dev AUTH=off` runs it without auth (a throwaway demo).
dev: $(VENV)/.synced
	$(PY) -m local $(if $(AUTH),--auth $(AUTH))

## Lint, type-check and run the whole test suite.
test: $(VENV)/.synced check
	$(PY) -m pytest

check: $(VENV)/.synced
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

fmt: $(VENV)/.synced
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

## Write the CloudFormation templates to cdk.out/ (no AWS credentials, no Docker).
synth: $(VENV)/.synced
	CDK_OUTDIR=cdk.out $(PY) app.py
	@echo "templates written to cdk.out/"

## Deploy every stack and write the endpoints file (needs AWS credentials).
deploy: $(VENV)/.synced
	npx --yes aws-cdk@2.1148.1 deploy --all --require-approval never \
		--app "$(PY) app.py" --outputs-file .local/deployed-outputs.json

## Measure the three transports (minutes): bench/results.json, docs/TRADEOFFS.md, docs/charts/.
bench: $(VENV)/.synced
	$(PY) -m bench

## The same in seconds with small numbers, into .local/bench-quick/ (what the tests run).
bench-quick: $(VENV)/.synced
	$(PY) -m bench --quick --out .local/bench-quick

## Monthly AWS cost of each transport, e.g. make cost COST_ARGS="--clients 10000 --events-per-minute 6".
cost: $(VENV)/.synced
	$(PY) -m bench.cost $(COST_ARGS)

# uv is bootstrapped by pip into the project's venv, then keeps it in step with uv.lock.
$(VENV)/.synced: pyproject.toml uv.lock
	@test -x $(UV) || { $(PYTHON) -m venv $(VENV) && $(VENV)/bin/pip install -q uv==$(UV_VERSION); }
	$(UV) sync --frozen --python $(PY)
	@touch $@

clean:
	rm -rf $(VENV) cdk.out .local .mypy_cache .ruff_cache .pytest_cache
