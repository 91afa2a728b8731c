"""Test set-up shared by the whole suite.

Airflow reads its configuration when first imported, so the environment is set here, before any test
module imports it: a throw-away AIRFLOW_HOME with a SQLite database, the example DAGs as the DAGs
folder, and unit-test mode (no "outside of the Task Runner" warnings). Each process gets its own home and
database, so every pytest-xdist worker (``make unit`` runs two) has a metadata database of its own.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

REPO = Path(__file__).resolve().parent.parent
_HOME = Path(tempfile.mkdtemp(prefix="telnyx-airflow-home-"))
#: dag.test() runs only DAGs from files under DAGS_FOLDER: the examples and the suite's own DAGs.
DAGS_FOLDER = _HOME / "dags"
DAGS_FOLDER.mkdir()
for _source in [
    *(REPO / "dags_examples").glob("*.py"),
    *(REPO / "tests" / "dags" / "dag_files").glob("*.py"),
    *(REPO / "docs" / "snippets").glob("dag_*.py"),  # the DAGs the docs include (tests/docs)
]:
    shutil.copy(_source, DAGS_FOLDER / _source.name)
os.environ.update(
    {
        "AIRFLOW_HOME": str(_HOME),
        "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_HOME / 'airflow.db'}",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
    }
)
sys.path.insert(0, str(REPO / "provider"))

#: A key that must never show up in logs, XCom, exceptions or reprs.
SECRET_KEY = "KEYsecret_0123456789abcdef_must_not_leak"
ACCOUNT_SID = "61bf923e-5e4d-4595-a110-56190ea18a1b"
MOCK_BASE_URL = "https://telnyx.test/v2"


@pytest.fixture
def telnyx_conn(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A ``telnyx_default`` connection pointing at a mocked base URL (for requests-mock / respx tests)."""
    conn = {"conn_type": "telnyx", "host": MOCK_BASE_URL, "login": ACCOUNT_SID, "password": SECRET_KEY}
    monkeypatch.setenv("AIRFLOW_CONN_TELNYX_DEFAULT", json.dumps(conn))
    return conn


@pytest.fixture
def scripted_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """A loopback server answering scripted replies, with ``telnyx_default`` pointing at it."""
    from tests.scripted_api import ScriptedApi

    with ScriptedApi() as api:
        conn = {"conn_type": "telnyx", "host": api.base_url, "login": ACCOUNT_SID, "password": SECRET_KEY}
        monkeypatch.setenv("AIRFLOW_CONN_TELNYX_DEFAULT", json.dumps(conn))
        yield api


#: The sandbox's date formats; a test marked ``both_date_formats`` runs once with each.
DATE_FORMATS = ("rfc2822", "iso8601")
#: Environment variables that change every in-process sandbox's defaults for a whole run, e.g.
#: ``TELNYX_SANDBOX_STRICT_SCHEMA=0 make unit`` runs the suite against the older, fuller replies (spec-shaped
#: ones are the default).
STRICT_SCHEMA_ENV = "TELNYX_SANDBOX_STRICT_SCHEMA"
DATE_FORMAT_ENV = "TELNYX_SANDBOX_DATE_FORMAT"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "both_date_formats: run the test on sandboxes writing RFC 2822 and ISO 8601 dates"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.get_closest_marker("both_date_formats") and "date_format" in metafunc.fixturenames:
        metafunc.parametrize("date_format", DATE_FORMATS, indirect=True)


@pytest.fixture
def date_format(request: pytest.FixtureRequest) -> str:
    """The date format of the sandboxes the suite's fixtures make: the test's parameter when it is marked
    ``both_date_formats``, else ``$TELNYX_SANDBOX_DATE_FORMAT``, else the sandbox's default (``rfc2822``)."""
    return str(getattr(request, "param", None) or os.environ.get(DATE_FORMAT_ENV) or "rfc2822")


@pytest.fixture(scope="session", autouse=True)
def _sandbox_defaults_from_environment() -> Iterator[None]:
    """``TELNYX_SANDBOX_STRICT_SCHEMA`` / ``TELNYX_SANDBOX_DATE_FORMAT`` become the defaults of every
    sandbox this process builds (arguments a test passes still win)."""
    forced: dict[str, object] = {}
    if os.environ.get(STRICT_SCHEMA_ENV, "").lower() in ("1", "true", "yes"):
        forced["strict_schema"] = True  # the default since issue 14, part B
    elif os.environ.get(STRICT_SCHEMA_ENV, "").lower() in ("0", "false", "no"):
        forced["strict_schema"] = False
    if os.environ.get(DATE_FORMAT_ENV):
        forced["date_format"] = os.environ[DATE_FORMAT_ENV]
    if not forced:
        yield
        return
    from telnyx_provider.sandbox import Sandbox

    original = Sandbox.__init__

    def init(self: Sandbox, *args: object, **kwargs: object) -> None:
        original(self, *args, **{**forced, **kwargs})  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Sandbox, "__init__", init)
        yield


@pytest.fixture(autouse=True)
def sandbox_replies(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """Every reply a strict sandbox (``strict_schema=True``) gives during the test is judged against Telnyx's
    response schemas (``tests/spec_conformance.py``); the test fails on any field, type or value the spec
    does not allow. Yields the :class:`~tests.spec_conformance.ReplyAudit`."""
    from tests.spec_conformance import ReplyAudit

    audit = ReplyAudit().install(monkeypatch)
    yield audit
    violations = audit.violations()
    if violations:
        shown = "\n".join(violations[:20])
        pytest.fail(f"{len(violations)} sandbox replies break Telnyx's response schemas:\n{shown}")


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch, date_format: str) -> Iterator[object]:
    """A TeXML sandbox on a free loopback port, with ``telnyx_default`` pointing at it."""
    from telnyx_provider.sandbox import Sandbox

    with Sandbox(port=0, processing_delay=0.2, seed=7, date_format=date_format) as sb:
        monkeypatch.setenv("AIRFLOW_CONN_TELNYX_DEFAULT", sb.airflow_conn_json())
        yield sb


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated Airflow metadata database (for ``dag.test()`` and CLI checks), made once per run."""
    import airflow
    from airflow.utils import db

    db.resetdb()
    if airflow.__version__.startswith("3.1."):
        # 3.1's dag.test() only runs DAGs already serialized to the database (3.2+ serializes them itself).
        from argparse import Namespace

        from airflow.cli.commands.dag_command import dag_reserialize

        dag_reserialize(Namespace(bundle_name=None))
    return _HOME


@pytest.fixture(autouse=True)
def _airflow_31_async_connection_lookup() -> Iterator[None]:
    """Let ``BaseHook.aget_connection`` run outside a task on Airflow 3.1, as it does on 3.2+.

    On 3.1 the async lookup touches the task runner's supervisor channel even when the connection comes
    from an environment variable, and that channel only exists inside a running task or triggerer.
    """
    import airflow

    if not airflow.__version__.startswith("3.1."):
        yield
        return
    from unittest import mock

    import airflow.sdk.execution_time.task_runner as task_runner
    from airflow.sdk.exceptions import ErrorType
    from airflow.sdk.execution_time.comms import ErrorResponse

    async def answer(message: object) -> ErrorResponse:
        # What the API server answers for a connection no secrets backend knows.
        return ErrorResponse(error=ErrorType.CONNECTION_NOT_FOUND, detail={"conn_id": message.conn_id})  # type: ignore[attr-defined]

    def answer_sync(message: object) -> ErrorResponse:
        return ErrorResponse(error=ErrorType.CONNECTION_NOT_FOUND, detail={"conn_id": message.conn_id})  # type: ignore[attr-defined]

    supervisor = mock.MagicMock()
    supervisor.asend = answer
    supervisor.send = answer_sync  # the sync lookup (Connection.get_connection_from_secrets) asks it too
    with mock.patch.object(task_runner, "SUPERVISOR_COMMS", supervisor, create=True):
        yield


def hang_up_once_recorded(sandbox, call_sid: str, after: float = 0.5) -> None:
    """Play the caller: hang up ``after`` seconds once a recording has started on the call (however long the
    start took: a fixed hang-up time could come before a slow start on a loaded machine)."""
    import threading
    import time

    def watch() -> None:
        deadline = time.monotonic() + 60
        while not sandbox.stats()["starts_per_call"].get(call_sid) and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(after)
        sandbox.hangup(call_sid)

    threading.Thread(target=watch, name="caller", daemon=True).start()
