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


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """A TeXML sandbox on a free loopback port, with ``telnyx_default`` pointing at it."""
    from telnyx_provider.sandbox import Sandbox

    with Sandbox(port=0, processing_delay=0.2, seed=7) as sb:
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
