# Two commands on a fresh machine: `make demo` (the example DAG against the sandbox) and `make test`.
PYTHON ?= python3
AIRFLOW_VERSION ?= 3.3.2
# The lowest Airflow that pyproject.toml admits (apache-airflow>=3.1.0): CI proves the floor.
AIRFLOW_FLOOR ?= 3.1.0
VENV ?= .venv
FLOOR_VENV ?= .venv-floor
# The system test's own environment: Airflow plus the provider installed from its built wheel.
SYSTEM_VENV ?= .venv-system
# The newest Airflow pre-release the unit suite also runs on (make test-next).
AIRFLOW_NEXT ?= 3.4.0b2
NEXT_VENV ?= .venv-next
SYSTEM_DIST ?= build/system-dist
# The distributed system test's environment: Airflow with the Celery and PostgreSQL extras, the wheel.
# celery<5.7: Celery 5.7.0 removed celery.backends.database.retry, which the Celery provider 3.26.0 imports.
DIST_VENV ?= .venv-distributed
PIP_FLAGS ?= -q --disable-pip-version-check
# The suites run on both cores (pytest-xdist): tests/conftest.py gives each worker process its own
# AIRFLOW_HOME and SQLite metadata database. PYTEST_XDIST= runs them in one process.
PYTEST_XDIST ?= -n 2

.PHONY: help install test lint unit test-floor demo benchmark soak clean system-test test-next \
	system-test-distributed distributed-servers

help:
	@echo "make demo   - run example_telnyx_call_recording against the local TeXML sandbox"
	@echo "make test   - lint, type-check and run the whole suite on Airflow $(AIRFLOW_VERSION) and $(AIRFLOW_FLOOR)"
	@echo "make system-test - the example DAGs on a real Airflow $(AIRFLOW_VERSION) (API server, scheduler, DAG processor, triggerer)"
	@echo "make test-next   - the suite on the Airflow pre-release $(AIRFLOW_NEXT)"
	@echo "make system-test-distributed - PostgreSQL, Redis, CeleryExecutor, two triggerers, several API workers"

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install $(PIP_FLAGS) "apache-airflow==$(AIRFLOW_VERSION)" -e ".[test]" 2>&1 | grep -v "^WARNING: Location" || true
	$(VENV)/bin/python -c "import telnyx_provider, airflow, pytest"
	touch $@

# The floor: Airflow $(AIRFLOW_FLOOR) with the lowest versions pyproject.toml declares for our own
# dependencies (pinned in the constraints file); check_floor.py fails if any pin was not installed or
# drifted from pyproject.toml's lower bounds.
$(FLOOR_VENV)/.installed: pyproject.toml ci/constraints-airflow-$(AIRFLOW_FLOOR).txt ci/check_floor.py
	$(PYTHON) -m venv $(FLOOR_VENV)
	$(FLOOR_VENV)/bin/pip install $(PIP_FLAGS) -c ci/constraints-airflow-$(AIRFLOW_FLOOR).txt \
		"apache-airflow==$(AIRFLOW_FLOOR)" -e ".[test]" 2>&1 | grep -v "^WARNING: Location" || true
	$(FLOOR_VENV)/bin/python -c "import telnyx_provider, airflow, pytest"
	$(FLOOR_VENV)/bin/python ci/check_floor.py ci/constraints-airflow-$(AIRFLOW_FLOOR).txt
	touch $@

# No editable install here: the provider comes from its wheel, rebuilt and reinstalled by every system-test.
$(SYSTEM_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(SYSTEM_VENV)
	$(SYSTEM_VENV)/bin/pip install $(PIP_FLAGS) "apache-airflow==$(AIRFLOW_VERSION)" build twine "setuptools>=68" 2>&1 | grep -v "^WARNING: Location" || true
	$(SYSTEM_VENV)/bin/python -c "import airflow, build, twine"
	touch $@

$(DIST_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(DIST_VENV)
	$(DIST_VENV)/bin/pip install $(PIP_FLAGS) "apache-airflow[celery,postgres]==$(AIRFLOW_VERSION)" "celery<5.7" build twine "setuptools>=68" 2>&1 | grep -v "^WARNING: Location" || true
	$(DIST_VENV)/bin/python -c "import airflow.providers.celery, psycopg2, redis, build, twine"
	touch $@

# sqlalchemy<2.1: 2.1 prints a harmless MissingGreenlet "Logging error" at exit after dag.test() (Airflow's dispose_orm).
$(NEXT_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(NEXT_VENV)
	$(NEXT_VENV)/bin/pip install $(PIP_FLAGS) "apache-airflow==$(AIRFLOW_NEXT)" "sqlalchemy<2.1" -e ".[test]" 2>&1 | grep -v "^WARNING: Location" || true
	$(NEXT_VENV)/bin/python -c "import telnyx_provider, airflow, pytest"
	touch $@

install: $(VENV)/.installed

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

unit: $(VENV)/.installed
	$(VENV)/bin/python -m pytest $(PYTEST_XDIST) $(PYTEST_ARGS)

test-floor: $(FLOOR_VENV)/.installed
	$(FLOOR_VENV)/bin/python -c "import airflow; print('Airflow floor', airflow.__version__)"
	$(FLOOR_VENV)/bin/python -m pytest $(PYTEST_XDIST) $(PYTEST_ARGS)

test: lint unit test-floor

test-next: $(NEXT_VENV)/.installed
	$(NEXT_VENV)/bin/python -c "import airflow; print('Airflow next', airflow.__version__)"
	$(NEXT_VENV)/bin/python -m pytest $(PYTEST_XDIST) $(PYTEST_ARGS)

# Build the wheel and the sdist with the venv $(1), check both, install the wheel (not editable) there.
define install_wheel
	rm -rf $(SYSTEM_DIST)
	$(1)/bin/python -m build --no-isolation --outdir $(SYSTEM_DIST) . > /dev/null
	$(1)/bin/twine check --strict $(SYSTEM_DIST)/*
	$(1)/bin/pip install $(PIP_FLAGS) --force-reinstall --no-deps $(SYSTEM_DIST)/*.whl
	$(1)/bin/pip install $(PIP_FLAGS) $(SYSTEM_DIST)/*.whl 2>&1 | grep -v "^WARNING: Location" || true
endef

# The wheel on a real Airflow (API server, scheduler, DAG processor, triggerer; SQLite, LocalExecutor).
system-test: $(SYSTEM_VENV)/.installed
	$(call install_wheel,$(SYSTEM_VENV))
	$(SYSTEM_VENV)/bin/python -m tests.system.run

# Debian's PostgreSQL and Redis servers, installed when missing (the test runs them itself, unprivileged).
distributed-servers:
	@if ! ls /usr/lib/postgresql/*/bin/initdb > /dev/null 2>&1 || ! command -v redis-server > /dev/null; then \
		echo "installing Debian's postgresql and redis-server"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql redis-server > /dev/null; \
	fi

# The wheel on the deployment teams run at scale: PostgreSQL, Redis, CeleryExecutor with two workers,
# two triggerers, the API server with two workers (tests/system/distributed/run.py).
system-test-distributed: $(DIST_VENV)/.installed distributed-servers
	$(call install_wheel,$(DIST_VENV))
	$(DIST_VENV)/bin/python -m tests.system.distributed.run $(DIST_ARGS)

demo: $(VENV)/.installed
	$(VENV)/bin/python scripts/run_demo.py

benchmark: $(VENV)/.installed
	$(VENV)/bin/pip install $(PIP_FLAGS) -e ".[benchmark]" 2>&1 | grep -v "^WARNING: Location" || true
	$(VENV)/bin/python benchmarks/waiting_at_scale.py

soak: $(VENV)/.installed
	$(VENV)/bin/python benchmarks/soak_faults.py

clean:
	rm -rf $(VENV) $(FLOOR_VENV) $(DIST_VENV) build *.egg-info provider/*.egg-info
