# Two commands for a fresh clone:  make run   |   make test
VENV ?= .venv
PY := $(VENV)/bin/python
NPM_DIR := tests/npm

.PHONY: run lint test test-lowest check-config clean

$(VENV)/.installed: setup.cfg pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# compat mode: a PEP 660 editable install hides twisted/plugins from twistd
	$(PY) -m pip install -q -e '.[test,lint]' --config-settings editable_mode=compat
	touch $@

# A second venv with the lowest versions setup.cfg allows for the direct
# runtime dependencies (tests/constraints-lowest.txt); test tools as usual.
LOWEST_VENV ?= build/venv-lowest
LOWEST_PY := $(LOWEST_VENV)/bin/python
LOWEST_TESTS ?= tests --ignore=tests/test_console.py

$(LOWEST_VENV)/.installed: setup.cfg pyproject.toml tests/constraints-lowest.txt
	rm -rf $(LOWEST_VENV)
	python3 -m venv $(LOWEST_VENV)
	$(LOWEST_PY) -m pip install -q --upgrade pip
	$(LOWEST_PY) -m pip install -q -e '.[test]' --config-settings editable_mode=compat \
		--constraint tests/constraints-lowest.txt
	touch $@

$(NPM_DIR)/node_modules/.installed: $(NPM_DIR)/package.json $(NPM_DIR)/package-lock.json
	cd $(NPM_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# make run's venv: a normal (not editable) install of this checkout with the
# runtime dependencies only, reinstalled when a source file changes. twistd
# finds the plugin in the venv's site-packages/twisted/plugins. setuptools
# reuses build/lib: it goes first, or a module deleted since would stay.
RUN_VENV ?= build/venv-run
RUN_SOURCES := setup.cfg pyproject.toml MANIFEST.in $(shell find mcpgated twisted -type f \
	\( -name '*.py' -o -name '*.sql' -o -path '*/ui/*' \) -not -name dropin.cache 2>/dev/null)

$(RUN_VENV)/.installed: $(RUN_SOURCES)
	python3 -m venv $(RUN_VENV)
	$(RUN_VENV)/bin/python -m pip install -q --upgrade pip
	rm -rf build/lib build/bdist.*
	$(RUN_VENV)/bin/python -m pip install -q .
	touch $@

## make run: install into build/venv-run and start the gateway with etc/mcpgated.ini;
## its files (admin token, databases, logs) go to var/ in this checkout
run: $(RUN_VENV)/.installed
	$(RUN_VENV)/bin/twistd --nodaemon --pidfile= mcpgated -c etc/mcpgated.ini

check-config: $(RUN_VENV)/.installed
	$(RUN_VENV)/bin/twistd mcpgated -c etc/mcpgated.ini --check-config

## make lint: ruff and mypy, as configured (and justified) in pyproject.toml
lint: $(VENV)/.installed
	$(PY) -m ruff check mcpgated twisted tests bench
	$(PY) -m mypy mcpgated twisted/plugins

## make test: install everything the tests need, lint, then run the whole suite
test: lint $(NPM_DIR)/node_modules/.installed
	$(PY) -m pytest -q tests

## make test-lowest: the suite (but the browser tests) on the lowest declared versions
test-lowest: $(LOWEST_VENV)/.installed $(NPM_DIR)/node_modules/.installed
	$(LOWEST_PY) -m pip list --format=freeze | grep -iE '^(twisted|treq|klein|attrs|service.identity|pyopenssl|werkzeug|prometheus.client|joserfc|httptools|idna|pyyaml|psycopg|psycopg.binary|hiredis|opentelemetry.sdk)=='
	$(LOWEST_PY) -m pytest -q $(LOWEST_TESTS)

clean:
	rm -rf $(VENV) $(NPM_DIR)/node_modules build dist *.egg-info var twisted/plugins/dropin.cache
