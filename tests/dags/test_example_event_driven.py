"""The event-driven example: a started recording's signed callback becomes an event of the Asset the consuming
DAG is scheduled on (both variants parse; the consumer picks each completed recording once)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from types import SimpleNamespace
from typing import TYPE_CHECKING

import pytest
import uvicorn

from telnyx_provider.plugins.callbacks import ReceiverSettings, create_app
from telnyx_provider.sandbox import Sandbox
from tests.conftest import ACCOUNT_SID, DAGS_FOLDER, REPO
from tests.plugins.conftest import recordings_asset_in_db  # noqa: F401 - a fixture

if TYPE_CHECKING:
    from collections.abc import Iterator

try:  # Airflow 3.2+
    from airflow.dag_processing.dagbag import DagBag
except ImportError:  # Airflow 3.1
    from airflow.models.dagbag import DagBag

EXAMPLE = "example_telnyx_event_driven.py"


def example_dags(monkeypatch, **env: str) -> dict[str, object]:
    for name, value in {"TELNYX_ACCOUNT_SID": ACCOUNT_SID, **env}.items():
        monkeypatch.setenv(name, value)
    bag = DagBag(dag_folder=str(DAGS_FOLDER / EXAMPLE))
    assert bag.import_errors == {}
    return dict(bag.dags)


@pytest.mark.parametrize("source", ["callbacks", "polling"])
def test_both_variants_schedule_the_consumer_on_the_recordings_asset(monkeypatch, source):
    from telnyx_provider.assets import recordings_asset_uri
    from telnyx_provider.triggers.recording import RecordingsFinishedTrigger

    dags = example_dags(monkeypatch, TELNYX_EVENTS_SOURCE=source)
    assert set(dags) == {
        "example_telnyx_start_recording_with_callback",
        "example_telnyx_store_finished_recordings",
    }
    consumer = dags["example_telnyx_store_finished_recordings"]
    (asset,) = consumer.timetable.asset_condition.objects
    assert asset.uri == recordings_asset_uri(ACCOUNT_SID)
    watchers = [watcher.trigger for watcher in asset.watchers]
    if source == "polling":
        assert [type(trigger) for trigger in watchers] == [RecordingsFinishedTrigger]
        assert watchers[0].account_sid == ACCOUNT_SID
    else:
        assert watchers == []
    start = dags["example_telnyx_start_recording_with_callback"].get_task("start_recording")
    assert (start.recording_status_callback is None) == (source == "polling")


def test_the_example_parses_in_its_own_interpreter_without_the_sandbox_or_aiohttp():
    code = (
        "import sys\n"
        "try:\n    from airflow.dag_processing.dagbag import DagBag\n"
        "except ImportError:  # Airflow 3.1\n    from airflow.models.dagbag import DagBag\n"
        "names = ('aiohttp', 'telnyx_provider.sandbox', 'fastapi')\n"
        "already = {m for m in names if m in sys.modules}  # Airflow 3.1's DagBag brings some itself\n"
        f"bag = DagBag(dag_folder={str(REPO / 'dags_examples' / EXAMPLE)!r});"
        "assert bag.import_errors == {}, bag.import_errors;"
        "heavy = [m for m in names if m in sys.modules and m not in already];"
        "assert not heavy, heavy"
    )
    env = {**os.environ, "TELNYX_EVENTS_SOURCE": "polling"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_consumer_stores_each_completed_recording_once(monkeypatch):
    consumer = example_dags(monkeypatch)["example_telnyx_store_finished_recordings"]
    pick = consumer.get_task("completed_recordings").python_callable
    event = lambda **extra: SimpleNamespace(extra=extra)  # noqa: E731 - what triggering_asset_events holds
    events = {
        "telnyx://acc/recordings": [
            event(RecordingSid="b", RecordingStatus="completed"),  # a callback
            event(from_trigger=True, payload={"sid": "a", "status": "completed"}),  # a poll (the watcher)
            event(RecordingSid="b", RecordingStatus="completed"),  # the same callback delivered twice
            event(RecordingSid="c", RecordingStatus="absent"),  # no audio to store
        ]
    }
    assert pick(triggering_asset_events=events) == ["a", "b"]
    assert pick(triggering_asset_events=None) == []


@pytest.fixture
def receiver_url(recordings_asset_in_db) -> Iterator[str]:  # noqa: F811 - the imported fixture
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(
        uvicorn.Config(create_app(ReceiverSettings()), log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/recording-status"
    server.should_exit = True
    thread.join(10)
    sock.close()


def test_the_starting_dag_ends_at_once_and_the_callback_becomes_an_asset_event(
    airflow_db, monkeypatch, receiver_url
):
    with Sandbox(port=0, processing_delay=0.2, account_sid=ACCOUNT_SID, recording_seconds=1.0) as sb:
        monkeypatch.setenv("AIRFLOW_CONN_TELNYX_DEFAULT", sb.airflow_conn_json())
        dag = example_dags(monkeypatch)["example_telnyx_start_recording_with_callback"]
        call_sid = sb.create_call()
        run = dag.test(run_conf={"call_sid": call_sid, "callback_url": receiver_url})
        assert str(run.state) == "success"
        after_start = sb.stats()["requests_by_route"]
        assert after_start["POST /Calls/{call_sid}/Recordings"] == 1
        assert "GET /Recordings/{sid}" not in after_start  # nothing waits for the recording
        deadline = time.monotonic() + 15
        while not (events := events_for_call(call_sid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        (event,) = events
        assert event["RecordingStatus"] == "completed"
        assert "RecordingUrl" not in event  # send_recording_url=False: no bearer link in the event
        assert sb.stats()["requests_by_route"] == after_start  # and nothing asked since


def events_for_call(call_sid: str) -> list[dict[str, object]]:
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        extras = [dict(row.extra) for row in session.scalars(select(AssetEvent)).all()]
    return [extra for extra in extras if extra.get("CallSid") == call_sid]
