# Two commands for a fresh clone:  make run   |   make test
VENV ?= .venv
PY := $(VENV)/bin/python
NPM_DIR := tests/npm

.PHONY: run test check-config clean

$(VENV)/.installed: setup.cfg pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# compat mode: a PEP 660 editable install hides twisted/plugins from twistd
	$(PY) -m pip install -q -e '.[test]' --config-settings editable_mode=compat
	touch $@

$(NPM_DIR)/node_modules/.installed: $(NPM_DIR)/package.json $(NPM_DIR)/package-lock.json
	cd $(NPM_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

## make run: install into .venv and start the gateway with etc/mcpgated.ini
run: $(VENV)/.installed
	$(VENV)/bin/twistd --nodaemon --pidfile= mcpgated -c etc/mcpgated.ini

check-config: $(VENV)/.installed
	$(VENV)/bin/twistd mcpgated -c etc/mcpgated.ini --check-config

## make test: install everything the tests need, then run the whole suite
test: $(VENV)/.installed $(NPM_DIR)/node_modules/.installed
	$(PY) -m pytest -q tests

clean:
	rm -rf $(VENV) $(NPM_DIR)/node_modules build dist *.egg-info var
