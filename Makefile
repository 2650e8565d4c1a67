# `make run`: set up this machine and run the appliance with a demo project.
# `make test`: the same set-up, then the whole test suite.
# Both are safe to re-run; they install only what is missing.
# `make deb`, `make apt-repo`: the Debian package and a signed apt repository.
# `make test-fast`: the quick lane, unit and web tests: PostgreSQL but no Docker.

VENV    ?= .venv
STATE   ?= var
CONFIG  ?= $(STATE)/appliance.toml
PYTHON  ?= python3
PY      := $(VENV)/bin/python
PYTEST_ARGS ?=
DEBIAN_STACK ?= 1
DEBIAN_VENV  ?= .venv-debian

.PHONY: run test test-fast host venv assets config image clean

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

test: host venv assets config image $(if $(DEBIAN_STACK),venv-debian)
	APPLIANCE_TEST_STATE=$(abspath $(STATE)) $(PY) -m pytest -q -ra $(PYTEST_ARGS)
	$(if $(DEBIAN_STACK),$(DEBIAN_PYTEST))

# Tests marked docker, browser or slow are left out, and Docker is pointed at a socket
# that does not exist: a test that needs the engine but is not marked fails here (or is
# skipped, named in the report) instead of quietly using it.
FAST_TESTS := -m "not docker and not browser and not slow"
NO_DOCKER  := unix:///dev/null/no-docker-in-test-fast

test-fast: host venv
	DOCKER_HOST=$(NO_DOCKER) APPLIANCE_TEST_STATE=$(abspath $(STATE)) \
	  $(PY) -m pytest -q -ra $(FAST_TESTS) $(PYTEST_ARGS)

# The tests again on Debian 12's own python3-* packages, the ones the .deb depends on
# (packaging/debian-stack.sh), for the code whose behaviour depends on their versions:
# the web (Flask, Werkzeug), the store (psycopg), the daemon (waitress, APScheduler),
# Docker, git (pygit2), the mail catcher (aiosmtpd), the CLI (click), reading mail
# (Python 3.11.2's email). Left out, to keep `make test` within its time: browser tests
# (Playwright is not in Debian), the package's own (they test the .deb in a container,
# whatever runs them), tests marked slow (the stand-in Odoo, restic, copies, benches)
# and the pipelines' long scenarios below, which compose the same library calls.
# `make test` runs them after the PyPI run; DEBIAN_STACK= (empty) leaves them out.
DEBIAN_TESTS ?= tests/unit tests/integration tests/security tests/packaging/test_debian_stack.py
DEBIAN_SKIP  ?= stages backup many_projects stop_drains setup_host restore backup_copies \
                backup_verify backup_export
DEBIAN_PYTEST = APPLIANCE_TEST_STATE=$(abspath $(STATE)) APPLIANCE_TEST_DEBIAN_STACK=1 \
	  $(DEBIAN_VENV)/bin/python -m pytest -q -ra -p no:cacheprovider \
	  -m "not browser and not slow" $(DEBIAN_SKIP:%=--ignore=tests/integration/test_%.py) \
	  $(DEBIAN_TESTS) $(PYTEST_ARGS)

$(DEBIAN_VENV)/.installed: pyproject.toml packaging/deb/debian/control packaging/debian-stack.sh
	bash packaging/debian-stack.sh $(DEBIAN_VENV)

venv-debian: $(DEBIAN_VENV)/.installed

test-debian: host venv-debian assets config image
	$(DEBIAN_PYTEST)

# Packaging: odoo-appliance_<version>_all.deb from the committed tree (DEB_SOURCE=worktree
# for this checkout's files; DEB_VERSION to build another version), and a signed apt
# repository folder holding it (README: Install from apt).
DEB_OUT  ?= build/deb
APT_REPO ?= build/apt
DEB_VERSION ?=

deb:
	bash packaging/build-deb.sh $(DEB_OUT) $(DEB_VERSION)

apt-repo: deb
	bash packaging/apt-repo.sh $(APT_REPO) $(DEB_OUT)/odoo-appliance_*_all.deb

.PHONY: venv-debian test-debian deb apt-repo

clean:
	rm -rf $(VENV) $(DEBIAN_VENV) node_modules appliance/web/static/vendor build
