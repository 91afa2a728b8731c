"""RecordingCompletedTrigger over a mocked async transport (respx): events, grace, deadline, pooling."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
import respx

from telnyx_provider.hooks import recording_async
from telnyx_provider.triggers.recording import RecordingCompletedTrigger
from tests.conftest import SECRET_KEY
from tests.hooks.test_recording_hook import DOCS_REPLY, GET_URL, RECORDING_SID


def _trigger(**kwargs) -> RecordingCompletedTrigger:
    kwargs.setdefault("poll_interval", 0.01)
    return RecordingCompletedTrigger(RECORDING_SID, **kwargs)


async def _first_event(trigger: RecordingCompletedTrigger) -> dict:
    events = [event async for event in trigger.run()]
    assert len(events) == 1, events  # exactly one event, then the generator ends
    return events[0].payload


def _reply(status: str, duration: str | None = None, code: int = 200) -> httpx.Response:
    return httpx.Response(code, json={**DOCS_REPLY, "status": status, "duration": duration})


def test_serialize_round_trip_is_json_safe_and_keyless():
    trigger = _trigger(account_sid="acct", deadline=1.5e9, not_found_deadline=1.4e9, telnyx_conn_id="c")
    classpath, kwargs = trigger.serialize()
    assert classpath == "telnyx_provider.triggers.recording.RecordingCompletedTrigger"
    text = json.dumps(kwargs)
    assert SECRET_KEY not in text
    rebuilt = RecordingCompletedTrigger(**json.loads(text))
    assert rebuilt.serialize() == (classpath, kwargs)


@respx.mock
async def test_waits_through_processing_until_completed(telnyx_conn):
    route = respx.get(GET_URL).mock(
        side_effect=[
            _reply("in-progress"),
            _reply("stopped"),
            _reply("completed", None),
            _reply("completed", "9"),
        ]
    )
    event = await _first_event(_trigger())
    assert event["status"] == "success"
    assert event["recording"]["duration"] == 9
    assert route.call_count == 4
    assert route.calls.last.request.headers["Authorization"] == f"Bearer {SECRET_KEY}"


@respx.mock
@pytest.mark.parametrize("status", ["absent", "failed", "deleted"])
async def test_failure_statuses_fire_a_failed_event(telnyx_conn, status):
    respx.get(GET_URL).mock(return_value=_reply(status, "0"))
    event = await _first_event(_trigger())
    assert event["status"] == "failed"
    assert status in event["message"]


@respx.mock
async def test_404_within_grace_keeps_waiting_then_errors(telnyx_conn):
    not_found = httpx.Response(404, json={"errors": [{"code": "10005", "detail": "Resource not found"}]})
    route = respx.get(GET_URL).mock(return_value=not_found)
    event = await _first_event(_trigger(not_found_deadline=time.time() + 1.0))
    assert event["status"] == "error"
    assert "404" in event["message"]
    assert route.call_count >= 2  # tolerated at least once before giving up


@respx.mock
async def test_client_error_is_one_error_event_not_a_loop(telnyx_conn):
    route = respx.get(GET_URL).mock(
        return_value=httpx.Response(
            401, json={"errors": [{"code": "10009", "title": "Authentication failed"}]}
        )
    )
    event = await _first_event(_trigger())
    assert event["status"] == "error"
    assert "10009" in event["message"]
    assert "401" in event["message"]
    assert SECRET_KEY not in event["message"]
    assert route.call_count == 1


@respx.mock
async def test_deadline_fires_a_timeout_event(telnyx_conn):
    respx.get(GET_URL).mock(return_value=_reply("in-progress"))
    event = await _first_event(_trigger(deadline=time.time() + 0.05))
    assert event["status"] == "timeout"


async def test_missing_connection_is_an_error_event(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_TELNYX_DEFAULT", raising=False)
    event = await _first_event(_trigger(telnyx_conn_id="no_such_connection"))
    assert event["status"] == "error"
    assert "no_such_connection" in event["message"]


@respx.mock
async def test_triggers_share_one_client_and_close_it_after_the_last(telnyx_conn):
    respx.get(GET_URL).mock(return_value=_reply("completed", "3"))
    created: list[recording_async.AsyncRecordingClient] = []
    original = recording_async.AsyncRecordingClient.__init__

    def counting_init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        created.append(self)

    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(recording_async.AsyncRecordingClient, "__init__", counting_init)
    try:
        events = await asyncio.gather(*(_first_event(_trigger()) for _ in range(25)))
    finally:
        monkeypatch.undo()
    assert [e["status"] for e in events] == ["success"] * 25
    assert len(created) == 1
    assert created[0]._client.is_closed
    assert recording_async._SHARED == {}


@respx.mock
async def test_client_is_released_before_the_event_is_handed_over(telnyx_conn):
    respx.get(GET_URL).mock(return_value=_reply("completed", "3"))
    run = _trigger().run()
    event = await run.__anext__()  # dag.test() stops here, never closing the generator
    assert event.payload["status"] == "success"
    assert recording_async._SHARED == {}
    await run.aclose()
