# Targets CI calls as they are (.ci/run runs `make check`).
PYTHON ?= python3
PYTEST_ARGS ?=

.PHONY: install services lint test check serve

install:  ## the package and its test dependencies
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -e ".[test]"

services:  ## PostgreSQL and MinIO for the integration tests (idempotent)
	scripts/install-test-services

lint:
	$(PYTHON) -m ruff check cargohold tests bench
	$(PYTHON) -m ruff format --check cargohold tests bench
	$(PYTHON) -m mypy

test:
	$(PYTHON) -m pytest $(PYTEST_ARGS)

check: install services lint test  ## everything CI runs

serve: install
	cargohold serve
