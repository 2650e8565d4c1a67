# `make run`: set up this machine and run the appliance with a demo project.
# `make test`: the same set-up, then the whole test suite.
# Both are safe to re-run; they install only what is missing.

VENV    ?= .venv
STATE   ?= var
CONFIG  ?= $(STATE)/appliance.toml
PYTHON  ?= python3
PY      := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: run test host venv assets config image clean

host:
	bash scripts/setup-host.sh $(STATE)

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

venv: $(VENV)/.installed

assets:
	bash scripts/copy-assets.sh

config: venv
	PY=$(PY) bash scripts/write-config.sh $(STATE) $(CONFIG)

# The base image of build containers: made with debootstrap when no registry has it.
image: config
	$(PY) -m appliance.runtime.images ensure-base --config $(CONFIG)

run: host venv assets config image
	PY=$(PY) STATE=$(STATE) CONFIG=$(CONFIG) bash scripts/run-demo.sh

test: host venv assets config image
	APPLIANCE_TEST_STATE=$(abspath $(STATE)) $(PY) -m pytest -q -ra $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) node_modules appliance/web/static/vendor
