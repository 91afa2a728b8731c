"""RecordingCompletedTrigger against the TeXML sandbox over real HTTP."""

from __future__ import annotations

import json
import os
import time

import pytest

from telnyx_provider.hooks.recording import RecordingHook
from telnyx_provider.triggers.recording import RecordingCompletedTrigger
from tests.conftest import hang_up_once_recorded


@pytest.fixture(autouse=True, params=["shared polls", "own polls"])
def polls(request, sandbox, monkeypatch):
    """Every wait here runs both ways: on the poll it shares with the triggerer's other waits (the default)
    and polling on its own (connection extra ``shared_polls`` false)."""
    if request.param == "own polls":
        conn = json.loads(os.environ["AIRFLOW_CONN_TELNYX_DEFAULT"])
        extra = conn.get("extra") or {}
        conn["extra"] = {**(json.loads(extra) if isinstance(extra, str) else extra), "shared_polls": False}
        monkeypatch.setenv("AIRFLOW_CONN_TELNYX_DEFAULT", json.dumps(conn))
    return request.param


async def _run(trigger: RecordingCompletedTrigger) -> dict:
    _classpath, kwargs = trigger.serialize()
    rebuilt = RecordingCompletedTrigger(**json.loads(json.dumps(kwargs)))  # as the triggerer does
    events = [event.payload async for event in rebuilt.run()]
    assert len(events) == 1
    return events[0]


async def test_trigger_fires_success_when_the_recording_completes(sandbox):
    call_sid = sandbox.create_call()
    hang_up_once_recorded(sandbox, call_sid)
    sid = RecordingHook().start_call_recording(call_sid)["sid"]
    event = await _run(RecordingCompletedTrigger(sid, poll_interval=0.1))
    assert event["status"] == "success"
    assert event["recording"]["sid"] == sid
    assert event["recording"]["status"] == "completed"
    assert isinstance(event["recording"]["duration"], int)
    assert sandbox.stats()["connections_accepted"] <= 2  # one for the start, one pooled for the polls


async def test_trigger_fires_failed_on_an_absent_recording(sandbox):
    call_sid = sandbox.create_call(silent=True)
    sid = RecordingHook().start_call_recording(call_sid)["sid"]
    sandbox.hangup(call_sid)  # after the start, however long it took: a silent call records nothing
    event = await _run(RecordingCompletedTrigger(sid, poll_interval=0.1))
    assert event["status"] == "failed"
    assert "absent" in event["message"]


async def test_trigger_tolerates_404_then_fires_an_error(sandbox):
    missing = "00000000-0000-4000-8000-000000000001"
    event = await _run(
        RecordingCompletedTrigger(missing, poll_interval=0.05, not_found_deadline=time.time() + 1.5)
    )
    assert event["status"] == "error"
    assert "404" in event["message"]
    assert sandbox.stats()["gets_per_recording"][missing] >= 2


async def test_trigger_deadline_fires_timeout(sandbox):
    sid = RecordingHook().start_call_recording(sandbox.create_call())["sid"]
    event = await _run(RecordingCompletedTrigger(sid, poll_interval=0.05, deadline=time.time() + 0.3))
    assert event["status"] == "timeout"


async def test_trigger_reports_a_bad_key_as_one_error_event(sandbox, monkeypatch):
    conn = json.loads(sandbox.airflow_conn_json())
    monkeypatch.setenv("AIRFLOW_CONN_TELNYX_DEFAULT", json.dumps({**conn, "password": "KEYnope_secret"}))
    event = await _run(RecordingCompletedTrigger("any-sid", poll_interval=0.05))
    assert event["status"] == "error"
    assert "401" in event["message"]
    assert "KEYnope_secret" not in json.dumps(event)
    assert sandbox.stats()["requests_by_route"]["GET /Recordings/{sid}"] == 1
