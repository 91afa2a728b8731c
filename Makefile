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
DOCS_HTML ?= build/docs/html
# Debian packages make docs needs: Graphviz draws the diagrams, Chromium renders the built pages.
DOCS_APT ?= graphviz chromium fonts-dejavu-core
# The distributed system test's environment: Airflow with the Celery and PostgreSQL extras, the wheel.
# celery<5.7: Celery 5.7.0 removed celery.backends.database.retry, which the Celery provider 3.26.0 imports.
DIST_VENV ?= .venv-distributed
PIP_FLAGS ?= -q --disable-pip-version-check
# The suites run on both cores (pytest-xdist): tests/conftest.py gives each worker process its own
# AIRFLOW_HOME and SQLite metadata database. PYTEST_XDIST= runs them in one process.
PYTEST_XDIST ?= -n 2

.PHONY: help install test lint unit test-floor demo benchmark soak clean system-test test-next docs docs-tools contract \
	system-test-distributed distributed-servers

help:
	@echo "make demo   - run example_telnyx_call_recording against the local TeXML sandbox"
	@echo "make test   - lint, type-check and run the whole suite on Airflow $(AIRFLOW_VERSION) and $(AIRFLOW_FLOOR)"
	@echo "make system-test - the example DAGs on a real Airflow $(AIRFLOW_VERSION) (API server, scheduler, DAG processor, triggerer)"
	@echo "make test-next   - the suite on the Airflow pre-release $(AIRFLOW_NEXT)"
	@echo "make system-test-distributed - PostgreSQL, Redis, CeleryExecutor, two triggerers, several API workers"
	@echo "make docs   - build the documentation site into $(DOCS_HTML) (warnings are errors) and check it renders"
	@echo "make contract    - the sandbox against Telnyx's response schemas, the hook against Prism serving the spec"

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

# The docs extra goes into the main virtualenv: autodoc imports the provider and Airflow.
$(VENV)/.docs-installed: pyproject.toml $(VENV)/.installed
	$(VENV)/bin/pip install $(PIP_FLAGS) -e ".[docs]" 2>&1 | grep -v "^WARNING: Location" || true
	$(VENV)/bin/python -c "import sphinx, furo, myst_parser, sphinx_autodoc_typehints"
	touch $@

# Graphviz and Chromium from the distribution (no browser download): installed only when missing.
docs-tools:
	@if ! command -v dot > /dev/null || ! command -v chromium > /dev/null; then \
		apt-get update -q > /dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
			-o DPkg::Lock::Timeout=300 --no-install-recommends $(DOCS_APT) > /dev/null; fi
	@dot -V 2>&1; chromium --version

# A fresh build every time (an incremental one would not repeat the warnings of unchanged pages), with
# every warning an error and every cross-reference resolved; then tests/docs opens pages in headless
# Chromium (screenshots under build/docs/screenshots) and checks no machine path leaked into the site.
docs: $(VENV)/.docs-installed docs-tools
	rm -rf $(DOCS_HTML) build/docs/doctrees build/docs/screenshots
	$(VENV)/bin/sphinx-build -W --keep-going -n -q -b html -d build/docs/doctrees docs $(DOCS_HTML)
	TELNYX_DOCS_HTML=$(DOCS_HTML) $(VENV)/bin/python -m pytest tests/docs/test_docs_render.py -q -p no:randomly

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

# Also part of `make unit`; the Prism check installs @stoplight/prism-cli into build/prism (npm) when missing.
contract: $(VENV)/.installed
	$(VENV)/bin/python -m pytest tests/contract $(PYTEST_ARGS)

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
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			-o DPkg::Lock::Timeout=300 postgresql redis-server > /dev/null; \
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
