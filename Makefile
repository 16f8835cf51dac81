# radbatch: `make run` starts everything on this machine; `make test` runs the test suite.
# Both set themselves up on a fresh machine: a .venv, the requirements (re-installed only when
# requirements.txt changes), and for `run` the database migrations and the admin user.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-installed

.PHONY: run test setup deps lint

# Quiet: set-up prints errors only, and deploy.run says where the logs are and when the app is ready.
run: deps
	@$(PY) -m db.setup --quiet
	@$(PY) -m deploy.run

test: deps
	$(PY) -m pytest $(PYTEST_ARGS)

setup: deps
	$(PY) -m db.setup

deps: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

# The project itself is installed editable (no dependencies: they are the requirements) for the `radbatch` command.
$(STAMP): requirements.txt pyproject.toml | $(PY)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	$(PY) -m pip install --disable-pip-version-check -q -e . --no-deps
	touch $(STAMP)

lint: deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
