# modelsync — the two commands of the quick start are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CLUSTER_ROOT ?= .cluster
PYTEST_ARGS ?=

.PHONY: help venv test-deps demo demo-down test test-fast unit lint fmt cluster-binaries cluster-up cluster-down cluster-status bench clean

help:
	@echo "make demo           the whole flow: cluster, git, operator, a rollout, a rollback, a prediction"
	@echo "make test           install what is needed, lint, and run the whole test suite"
	@echo "make test-fast      for iterating: lint, unit and the kwok tests (no real node, no chart)"
	@echo "make unit           unit tests only (no cluster)"
	@echo "make lint           ruff, mypy and the import layers (import-linter)"
	@echo "make cluster-up     start the local cluster (prints export KUBECONFIG=...)"
	@echo "make cluster-down   stop it"
	@echo "make bench          benchmarks: scale, latency, memory; Flux side by side (BENCH_N=100,1000);"
	@echo "                    image builds, models on the real node (BENCH_ONLY=images,models)"

# The virtualenv is rebuilt whenever pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "error: Python 3.11 or newer is needed (found " + sys.version.split()[0] + "); set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $@

venv: $(VENV)/.installed

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

fmt: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

unit: venv
	$(PY) -m pytest $(UNIT_TESTS) $(PYTEST_ARGS)

# `make test` prints how long each phase took; each pytest phase starts a cluster of
# its own. The builds (cached after the first time) are phases of their own, so that a
# cold build shows its log instead of hiding inside a test fixture. The tier is the folder: tests/integration/real_node/ needs the real node (root,
# containerd); the rest of tests/integration/ runs on kwok nodes alone.
REAL_NODE_TESTS := tests/integration/real_node
NOT_REAL_NODE := --ignore=$(REAL_NODE_TESTS)
UNIT_TESTS := tests/unit testcluster/tests
# Modules run on this many pytest-xdist workers (a module stays on one, with its
# fixtures); each worker of the kwok phase starts a cluster and an operator of its own.
# The real node's tests run on one: one real node per machine.
TEST_WORKERS ?= 2
PARALLEL := -n $(TEST_WORKERS) --dist loadfile
# The builds run in the background, niced, while the phases before their `wait` run:
# the cluster's binaries, the renderers and Gitea beside lint's tail and the unit tests;
# the real node's images beside the kwok integration tests.
test: venv
	@$(PY) -m tools.phases \
	  "lint=$(MAKE) --no-print-directory lint" \
	  "test deps=$(MAKE) --no-print-directory test-deps" \
	  "&builds=$(PY) -m testcluster build && $(PY) -m testcluster.renderers && $(PY) -m testcluster gitea" \
	  "unit=$(PY) -m pytest $(UNIT_TESTS) $(PARALLEL) $(PYTEST_ARGS)" \
	  wait -- \
	  "&images=$(PY) -m testcluster images" \
	  "integration=$(PY) -m pytest tests/integration $(NOT_REAL_NODE) $(PARALLEL) $(PYTEST_ARGS)" \
	  wait \
	  "real node=$(PY) -m pytest $(REAL_NODE_TESTS) $(PYTEST_ARGS)" \
	  "e2e=$(PY) -m pytest tests/e2e $(PYTEST_ARGS)"

# For iterating: what needs no real node and no chart; `make test` is what CI runs.
test-fast: venv lint cluster-binaries
	$(PY) -m pytest $(UNIT_TESTS) tests/integration $(NOT_REAL_NODE) $(PARALLEL) $(PYTEST_ARGS)

# What the tests run beside the cluster, from Debian's packages (a fresh CI machine has
# none of them): OpenSSH's sshd for git over ssh; containerd, runc, the CNI plugins,
# iptables and conntrack for the real node; mmdebstrap builds its images; a C compiler
# for the tests' Gitea (SQLite needs cgo).
TEST_DEPS := /usr/sbin/sshd:openssh-server /usr/bin/containerd:containerd /usr/bin/ctr:containerd \
  /usr/sbin/runc:runc /usr/lib/cni/bridge:containernetworking-plugins \
  /usr/sbin/iptables:iptables /usr/sbin/conntrack:conntrack /usr/bin/mmdebstrap:mmdebstrap \
  /usr/bin/gcc:gcc

test-deps:
	@missing=""; for dep in $(TEST_DEPS); do \
	  [ -e "$${dep%%:*}" ] || missing="$$missing $${dep##*:}"; done; \
	missing=$$(echo $$missing | tr ' ' '\n' | sort -u | tr '\n' ' '); \
	if [ -n "$${missing// }" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing$$missing(for the git-over-ssh tests and the real node)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "error: the tests need these Debian packages: $$missing(as root: apt-get install $$missing)"; exit 1; \
	  fi; \
	fi

cluster-binaries: venv
	$(PY) -m testcluster build
	$(PY) -m testcluster.renderers
	$(PY) -m testcluster gitea

cluster-up: venv
	$(PY) -m testcluster up --root $(CLUSTER_ROOT)

cluster-down: venv
	$(PY) -m testcluster down --root $(CLUSTER_ROOT)

cluster-status: venv
	$(PY) -m testcluster status --root $(CLUSTER_ROOT)

# The whole flow on this machine: cluster, CRDs, git, operator, a ModelSync, a version
# bump and an automatic rollback; where the real node starts, the operator by `helm install`
# and one model answering for real. With KUBECONFIG set, that cluster is used instead.
demo: venv cluster-binaries
	$(PY) -m tools.demo up

demo-down: venv
	$(PY) -m tools.demo down

# BENCH_N=100,1000 (model counts), BENCH_COMMITS=20, BENCH_FLUX=1 (Flux side by side).
# images: cold (an empty cache of its own, minutes; BENCH_COLD_IMAGES=0 skips it) and warm
# builds of every image. models, on the real node (a line says why when it cannot start):
# commit -> first correct prediction per runtime and for version bumps (BENCH_BUMPS=3);
# latency and throughput through a model's Service (BENCH_REQUESTS=2000, BENCH_CONCURRENCY=8).
# BENCH_ONLY=images,models (any of cluster, suite, render, images, models, shards, writes) runs only
# those parts; shards: one operator against two shards at BENCH_SHARDS_N models (2000); writes: the
# writes one model costs cold and per version bump, plain and with each feature (about 3 min).
# Prints tables; the same figures go to bench-results.json.
BENCH_PARTS := cluster suite render images models shards writes
BENCH_ONLY ?= $(BENCH_PARTS)
bench_only = $(filter $(1),$(subst $(comma), ,$(BENCH_ONLY)))
comma := ,
bench: venv cluster-binaries
	@unknown="$(filter-out $(BENCH_PARTS),$(subst $(comma), ,$(BENCH_ONLY)))"; \
	if [ -n "$$unknown" ]; then echo "BENCH_ONLY: unknown part(s) $$unknown; the parts: $(BENCH_PARTS)"; exit 2; fi
	$(if $(call bench_only,cluster),$(PY) -m tests.bench.cluster_start)
	$(if $(call bench_only,suite),$(PY) -m tests.bench.suite)
	$(if $(call bench_only,suite),$(PY) -m tests.bench.rollback)
	$(if $(call bench_only,render),$(PY) -m tests.bench.render)
	$(if $(call bench_only,images),$(PY) -m tests.bench.image_builds)
	$(if $(call bench_only,models),$(PY) -m tests.bench.models)
	$(if $(call bench_only,shards),$(PY) -m tests.bench.shards)
	$(if $(call bench_only,writes),$(PY) -m tests.bench.writes)

clean: cluster-down
	rm -rf $(VENV) $(CLUSTER_ROOT) .mypy_cache .ruff_cache .pytest_cache .import_linter_cache
