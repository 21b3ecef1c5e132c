# wabaplane: `make test` sets up a fresh machine (virtualenv, Python dependencies, kubectl, the
# local control plane's binaries) and runs every check and test.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install services cluster-binaries helm crds chart lint test unit-test demo cluster-start cluster-stop clean

# The virtualenv is rebuilt when pyproject.toml changes.
$(BIN)/.installed: pyproject.toml
	@echo "==> Creating the virtualenv in $(VENV) and installing wabaplane with its test tools"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --editable '.[dev]'
	@touch $@

install: $(BIN)/.installed

# PostgreSQL and Redis from Debian's packages, installed once; the tests start and stop their own
# throw-away servers on loopback ports. Debian's prometheus package brings promtool, which checks
# and unit-tests the chart's alerts (the Prometheus server itself is never started).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
services:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && command -v redis-server >/dev/null \
			&& command -v promtool >/dev/null; then \
		echo "==> PostgreSQL, Redis and promtool already installed"; \
	else \
		echo "==> Installing PostgreSQL, Redis and Prometheus (for promtool) from Debian's packages"; \
		$(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends \
			postgresql redis-server prometheus; \
	fi

# etcd, kube-apiserver and kube-controller-manager, built once from the Go modules and cached
# outside the repository (~/.cache/wabaplane); skipped when present.
cluster-binaries: install
	@echo "==> Local control plane binaries"
	$(BIN)/wabaplane cluster build

# Helm, built once from its Go module and cached outside the repository (the chart's tests use it).
HELM_VERSION := v3.22.0
CACHE_DIR ?= $(or $(WABAPLANE_CACHE_DIR),$(HOME)/.cache/wabaplane)
HELM_DIR := $(CACHE_DIR)/helm-$(HELM_VERSION)
export WABAPLANE_HELM := $(HELM_DIR)/helm
helm:
	@if [ -x "$(WABAPLANE_HELM)" ]; then echo "==> helm $(HELM_VERSION) cached in $(HELM_DIR)"; else \
		echo "==> Building helm $(HELM_VERSION) from its Go module (once; a few minutes on two cores)"; \
		mkdir -p "$(HELM_DIR).partial" && \
		GOBIN="$(HELM_DIR).partial" CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod \
			go install -v -ldflags="-s -w" helm.sh/helm/v3/cmd/helm@$(HELM_VERSION) 2>&1 | \
			awk '{ n++ } n % 100 == 0 { print "    " n " packages compiled ..."; fflush() }' && \
		test -x "$(HELM_DIR).partial/helm" && rm -rf "$(HELM_DIR)" && mv "$(HELM_DIR).partial" "$(HELM_DIR)" && \
		echo "==> helm built: $(WABAPLANE_HELM)"; \
	fi

crds: install
	$(BIN)/wabaplane crds --output-dir crds
	$(BIN)/wabaplane chart --output-dir charts/wabaplane

chart: crds

lint: install
	@echo "==> ruff and mypy"
	$(BIN)/ruff check src tests hack bench
	$(BIN)/ruff format --check src tests hack bench
	$(BIN)/mypy

unit-test: install services
	$(BIN)/pytest -m "not cluster"

test: install services cluster-binaries helm lint
	@echo "==> Test suite (starts and stops its own local control plane, PostgreSQL and Redis)"
	$(BIN)/pytest

# The whole product on this machine with the emulator as Meta (see README). ARGS=--once plays the
# scenario and exits non-zero when a step fails. It uses the cluster in KUBECONFIG when one answers
# and builds the local control plane's binaries only when it needs them.
ARGS ?=
demo: install
	@echo "==> wabaplane dev $(ARGS)"
	$(BIN)/wabaplane dev $(ARGS)

cluster-start: cluster-binaries
	$(BIN)/wabaplane cluster start

cluster-stop: install
	$(BIN)/wabaplane cluster stop

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist
