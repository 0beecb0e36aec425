# Developer entry points. Everything local is installed under .local/ (git-ignored).
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

SCRIPTS := infra/scripts
TEMPLATE := infra/template.yaml
CFN_LINT := .local/venv/bin/cfn-lint
# Every Lambda binary the template deploys (BuildProperties.Binary); `make build` builds them all.
FUNCTIONS := members accrue redeem rewards tier-evaluate promotions-scheduler campaign-dispatch \
             campaign-worker subscription-billing referral-worker outbox code-sweep \
             webhook-delivery points-expiry

.PHONY: help run demo contract test lint build deploy clean-local simulate

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

run: ## the whole template locally: DynamoDB Local, moto (SQS), every function binary; API on http://127.0.0.1:3000
	$(SCRIPTS)/run-local.sh $(ARGS)

demo: ## walk the running local stack end to end (start `make run` first; API=http://127.0.0.1:3000)
	cargo run --quiet -p loyalty_local --bin loyalty-local -- demo --api $${API:-http://127.0.0.1:3000}

contract: ## schemathesis against the running local stack, docs/openapi.yaml as the contract (start `make run` first)
	$(SCRIPTS)/contract.sh $${API:-http://127.0.0.1:3000}

test: ## every check and test: cfn-lint, fmt, clippy, cargo test (with DynamoDB Local)
	$(SCRIPTS)/test.sh

lint: ## cfn-lint + cargo fmt --check + clippy -D warnings
	$(SCRIPTS)/install-python-tools.sh
	$(CFN_LINT) --append-rules cfn_lint_serverless.rules -- $(TEMPLATE)
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

build: ## every Lambda function for arm64 (cargo-lambda + zig, as sam build does) → target/lambda/<fn>/bootstrap.zip
	$(SCRIPTS)/build-lambdas.sh $(FUNCTIONS)

deploy: ## sam build && sam deploy --guided (interactive; needs AWS credentials; never run in CI)
	@if [[ -n "$${CI:-}" ]]; then echo "refusing to deploy from CI" >&2; exit 1; fi
	sam build
	sam deploy --guided

simulate: ## seeded simulation with faults (SEEDS=512, SEED=n replays one; soak: make simulate SEEDS=100000)
	cargo run --quiet --profile simulate -p loyalty_sim --bin loyalty-sim

bench: ## full benchmark run (DynamoDB Local) → BENCHMARKS.md + infra/bench/results/latest.json
	infra/bench/run.sh

clean-local: ## stop local DynamoDB, moto and localstripe instances and delete .local/
	@shopt -s nullglob; for f in .local/run/dynamodb-*.pid; do \
	  p=$${f##*/dynamodb-}; $(SCRIPTS)/dynamodb-local.sh stop "$${p%.pid}" || true; \
	done; for f in .local/run/moto_server-*.pid; do \
	  p=$${f##*/moto_server-}; $(SCRIPTS)/moto.sh stop "$${p%.pid}" || true; \
	done; for f in .local/run/localstripe-*.pid; do \
	  p=$${f##*/localstripe-}; $(SCRIPTS)/localstripe.sh stop "$${p%.pid}" || true; \
	done
	rm -rf .local
