# One job per target. `make run` and `make test` are the two commands a new user needs; both
# create or refresh .venv/ (and node_modules/ where the CDK CLI is needed) by themselves.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
CDK := npx --no-install cdk
# jsii (under aws-cdk-lib) prints an end-of-life banner on Node 20: silenced on purpose, see
# "Node 20 banners and CDK notices silenced" in docs/decisions.md.
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export CDK_DISABLE_VERSION_CHECK := 1
export CDK_CLI_NOTICES := false

.PHONY: help venv test runtime-tests lint format typecheck unit run demo synth bootstrap deploy diff destroy redrive inspect-dlq trace rotate-token bench lock clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (found " + sys.version.split()[0] + ")")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt ".[dev,infra]"
	@touch $@

venv: $(STAMP) ## create or refresh .venv/ from pyproject.toml + constraints.txt

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

lint: $(STAMP) ## ruff lint + format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP) ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: $(STAMP) ## mypy --strict
	$(BIN)/mypy

# Every AWS call code in functions/ and tools/ makes during the suite, one file per process (the
# e2e tests' `make run` processes too), then checked against what the IAM tests proved: "Every AWS
# call is checked against its role" in docs/decisions.md.
AWS_CALLS := .aws-calls
RECORD_AWS_CALLS := RELAY_RECORD_AWS_CALLS=$(CURDIR)/$(AWS_CALLS)

test: $(STAMP) $(NODE_STAMP) lint typecheck ## lint, types, cfn-lint and the whole test suite
	rm -rf $(AWS_CALLS)
	$(RECORD_AWS_CALLS) PYTHONPATH="$(CURDIR)/tests/iam/recording_site$${PYTHONPATH:+:$$PYTHONPATH}" \
	  $(PY) -m pytest -n 2 --dist loadfile --cov --cov-report=term
	$(RECORD_AWS_CALLS) $(PY) -m pytest -q -p no:cacheprovider tests/iam/check_recorded_suites.py
	$(MAKE) --no-print-directory runtime-tests
	$(MAKE) --no-print-directory synth CDK_ARGS="$(NO_DEPLOY_CONTEXT)"
	$(BIN)/cfn-lint -i W3005 -- cdk.out/*.template.json

# The Lambda runtime's Python (infra/constants.py LAMBDA_PYTHON_VERSION), found on PATH or in
# pyenv's versions; the bundle's bytecode is compiled by it, so the functions' tests run on it too.
RUNTIME_VENV := .venv-runtime
RUNTIME_STAMP := $(RUNTIME_VENV)/.installed

$(RUNTIME_STAMP): pyproject.toml constraints.txt
	@interpreter="$$($(PYTHON) -m infra.runtime_python)"; \
	if [ -z "$$interpreter" ]; then \
	  echo "note: no Python $$($(PYTHON) -c 'from infra.constants import LAMBDA_PYTHON_VERSION as v; print(v)') on this machine: the functions' tests run on $$($(PYTHON) --version) only"; \
	  exit 0; \
	fi; \
	test -x $(RUNTIME_VENV)/bin/python || $$interpreter -m venv $(RUNTIME_VENV); \
	$(RUNTIME_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt ".[test]" && touch $@

runtime-tests: $(RUNTIME_STAMP) ## the unit and integration tests on the Lambda runtime's Python
	@if [ -f $(RUNTIME_STAMP) ]; then \
	  $(RUNTIME_VENV)/bin/python -m pytest -n 2 --dist loadfile -q -p no:cacheprovider tests/unit tests/integration; \
	fi

unit: $(STAMP) ## the fast tests only (no emulator, no synth)
	$(PY) -m pytest -m unit -q

run: $(STAMP) ## the whole pipeline on this machine (moto + ingest + consumer + fake Graph API)
	$(PY) -m local_pipeline.run

demo: $(STAMP) ## drive a running `make run` with every kind of webhook and check the replies
	$(PY) -m local_pipeline.demo

# CDK context for synth/diff/deploy, e.g. make deploy CDK_ARGS="-c alarmEmail=ops@example.com"
# (keys: infra/context.py, docs/deploy.md; alarmEmail is required, `none` is an explicit choice);
# tool flags, e.g. make inspect-dlq ARGS="--why --limit 20".
CDK_ARGS ?=
ARGS ?=
# bootstrap, destroy and test's own synth run the app but never deploy its template: the alarm
# recipient does not matter there. Given first, so a -c alarmEmail=... in CDK_ARGS still wins.
NO_DEPLOY_CONTEXT := -c alarmEmail=none

synth: $(STAMP) $(NODE_STAMP) ## synthesize the stack offline into cdk.out/ (cdk-nag runs here)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(CDK) synth --quiet $(CDK_ARGS)

bootstrap: $(STAMP) $(NODE_STAMP) ## cdk bootstrap: once per AWS account and region, before deploy
	PATH="$(CURDIR)/$(BIN):$$PATH" $(CDK) bootstrap $(NO_DEPLOY_CONTEXT) $(CDK_ARGS)

diff: $(STAMP) $(NODE_STAMP) ## cdk diff against your account
	PATH="$(CURDIR)/$(BIN):$$PATH" $(CDK) diff $(CDK_ARGS)

deploy: $(STAMP) $(NODE_STAMP) ## cdk deploy into your AWS account
	PATH="$(CURDIR)/$(BIN):$$PATH" $(CDK) deploy $(CDK_ARGS)

destroy: $(STAMP) $(NODE_STAMP) ## delete the stack; lists first what is retained (queues, table, secret)
	$(PY) -m tools.retained $(ARGS)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(CDK) destroy $(NO_DEPLOY_CONTEXT) $(CDK_ARGS)

redrive: $(STAMP) ## move the dead-letter queue back to the inbound queue (StartMessageMoveTask)
	$(PY) -m tools.dlq redrive $(ARGS)

inspect-dlq: $(STAMP) ## show what is in the dead-letter queue and why it failed (masked)
	$(PY) -m tools.dlq inspect $(ARGS)

WAMID ?=
trace: $(STAMP) ## where is my message? WAMID=<inbound wamid> (ARGS=--local: in `make run`)
	$(PY) -m tools.trace "$(WAMID)" $(ARGS)

rotate-token: $(STAMP) ## put a new access token (read from stdin, not echoed) into the secret
	@$(PY) -m tools.rotate_token $(ARGS)

$(VENV)/.bench-installed: $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt ".[bench]"
	@touch $@

bench: $(STAMP) $(VENV)/.bench-installed ## every performance figure in one run: the table, bench/results.json
	$(PY) -m benchmarks

lock: ## re-resolve constraints.txt from pyproject.toml (then review the diff)
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet ".[dev,infra,bench]"
	.lock-venv/bin/pip freeze --exclude-editable | grep -vE '^(whatsapp-relay|pip|setuptools|wheel)==' > constraints.txt
	rm -rf .lock-venv

clean: ## remove build outputs (keeps .venv and node_modules)
	rm -rf cdk.out .build .pytest_cache .mypy_cache .ruff_cache .hypothesis .coverage htmlcov .aws-calls
