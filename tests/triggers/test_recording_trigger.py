"""RecordingCompletedTrigger against scripted replies over loopback HTTP: events, grace, deadline, pooling."""

from __future__ import annotations

import asyncio
import json
import os
import time

import pytest

from telnyx_provider.connection import TelnyxConnectionConfig
from telnyx_provider.hooks import recording_async, shared_clients
from telnyx_provider.triggers.recording import RecordingCompletedTrigger
from tests.conftest import ACCOUNT_SID, SECRET_KEY
from tests.hooks.test_recording_hook import DOCS_REPLY, RECORDING_SID
from tests.scripted_api import Reply

PATH = f"/texml/Accounts/{ACCOUNT_SID}/Recordings/{RECORDING_SID}.json"


@pytest.fixture(autouse=True, params=["shared polls", "own polls"])
def polls(request, scripted_api, monkeypatch):
    """Every wait here runs both ways: on the poll it shares with the triggerer's other waits (the default)
    and polling on its own (connection extra ``shared_polls`` false)."""
    if request.param == "own polls":
        conn = json.loads(os.environ["AIRFLOW_CONN_TELNYX_DEFAULT"])
        extra = conn.get("extra") or {}
        conn["extra"] = {**(json.loads(extra) if isinstance(extra, str) else extra), "shared_polls": False}
        monkeypatch.setenv("AIRFLOW_CONN_TELNYX_DEFAULT", json.dumps(conn))
    return request.param


def _trigger(**kwargs) -> RecordingCompletedTrigger:
    kwargs.setdefault("poll_interval", 0.01)
    return RecordingCompletedTrigger(RECORDING_SID, **kwargs)


async def _first_event(trigger: RecordingCompletedTrigger) -> dict:
    events = [event async for event in trigger.run()]
    assert len(events) == 1, events  # exactly one event, then the generator ends
    return events[0].payload


def _reply(status: str, duration: str | None = None) -> Reply:
    return Reply(200, {**DOCS_REPLY, "status": status, "duration": duration})


def test_serialize_round_trip_is_json_safe_and_keyless():
    trigger = _trigger(
        account_sid="acct",
        deadline=1.5e9,
        not_found_deadline=1.4e9,
        telnyx_conn_id="c",
        call_sid="v3:abc",
        stop_on_kill=True,
        max_retries=2,
        retry_max_wait=0.5,
        retry_budget=7,
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "telnyx_provider.triggers.recording.RecordingCompletedTrigger"
    text = json.dumps(kwargs)
    assert SECRET_KEY not in text
    rebuilt = RecordingCompletedTrigger(**json.loads(text))
    assert rebuilt.serialize() == (classpath, kwargs)
    assert (rebuilt.call_sid, rebuilt.stop_on_kill) == ("v3:abc", True)
    assert (rebuilt.max_retries, rebuilt.retry_max_wait, rebuilt.retry_budget) == (2, 0.5, 7)


def test_a_trigger_built_the_old_way_neither_stops_nor_overrides():
    """Triggers serialised before these arguments existed rebuild with their old meaning."""
    trigger = RecordingCompletedTrigger(
        RECORDING_SID, poll_interval=1.0, deadline=None, not_found_deadline=None
    )
    assert (trigger.call_sid, trigger.stop_on_kill) == (None, False)
    assert (trigger.max_retries, trigger.retry_max_wait, trigger.retry_budget) == (None, None, None)


@pytest.mark.parametrize(
    "kwargs", [{"max_retries": -1}, {"retry_budget": 0}, {"retry_max_wait": "5"}, {"call_sid": "a/b"}]
)
def test_bad_arguments_are_refused_when_the_trigger_is_built(kwargs):
    from telnyx_provider.errors import TelnyxValidationError

    with pytest.raises(TelnyxValidationError):
        _trigger(**kwargs)


async def test_waits_through_processing_until_completed(scripted_api):
    scripted_api.script(
        "GET",
        PATH,
        _reply("in-progress"),
        _reply("stopped"),
        _reply("completed", None),
        _reply("completed", "9"),
    )
    event = await _first_event(_trigger())
    assert event["status"] == "success"
    assert event["recording"]["duration"] == 9
    assert scripted_api.count("GET", PATH) == 4
    headers = scripted_api.seen[-1].headers
    assert headers["Authorization"] == f"Bearer {SECRET_KEY}"
    assert headers["User-Agent"].startswith("airflow-provider-telnyx/")
    assert headers["Accept"] == "application/json"


async def test_call_sids_stay_percent_encoded_on_the_wire(scripted_api):
    config = TelnyxConnectionConfig(
        conn_id="t", base_url=scripted_api.base_url, api_key=SECRET_KEY, account_sid=ACCOUNT_SID
    )
    client = recording_async.AsyncRecordingClient(config)
    path = f"/texml/Accounts/{ACCOUNT_SID}/Calls/v3%3Aabc/Recordings/{RECORDING_SID}.json"
    scripted_api.script("POST", path, _reply("stopped"))
    try:
        recording = await client.update_call_recording("v3:abc", RECORDING_SID, "stopped")
    finally:
        await client.aclose()
    assert recording["status"] == "stopped"
    assert scripted_api.seen[-1].body == b"Status=stopped"
    assert scripted_api.seen[-1].headers["Content-Type"] == "application/x-www-form-urlencoded"


@pytest.mark.parametrize("status", ["absent", "failed", "deleted"])
async def test_failure_statuses_fire_a_failed_event(scripted_api, status):
    scripted_api.script("GET", PATH, _reply(status, "0"))
    event = await _first_event(_trigger())
    assert event["status"] == "failed"
    assert status in event["message"]


async def test_unknown_status_keeps_waiting(scripted_api):
    scripted_api.script("GET", PATH, _reply("transcoding"), _reply("completed", "2"))
    event = await _first_event(_trigger())
    assert event["status"] == "success"
    assert scripted_api.count("GET", PATH) == 2


async def test_404_within_grace_keeps_waiting_then_errors(scripted_api):
    event = await _first_event(_trigger(not_found_deadline=time.time() + 1.0))  # PATH is not scripted: 404
    assert event["status"] == "error"
    assert "404" in event["message"]
    assert scripted_api.count("GET", PATH) >= 2  # tolerated at least once before giving up


async def test_client_error_is_one_error_event_not_a_loop(scripted_api):
    scripted_api.script(
        "GET", PATH, Reply(401, {"errors": [{"code": "10009", "title": "Authentication failed"}]})
    )
    event = await _first_event(_trigger())
    assert event["status"] == "error"
    assert "10009" in event["message"]
    assert "401" in event["message"]
    assert SECRET_KEY not in event["message"]
    assert scripted_api.count("GET", PATH) == 1


async def test_retryable_errors_are_retried_by_the_shared_policy(scripted_api):
    scripted_api.script(
        "GET",
        PATH,
        Reply(503, "<html>busy</html>", {"Content-Type": "text/html", "Retry-After": "0"}),
        Reply(reset=True),
        _reply("completed", "5"),
    )
    event = await _first_event(_trigger())
    assert event["status"] == "success"
    assert scripted_api.count("GET", PATH) == 3


async def test_deadline_fires_a_timeout_event(scripted_api):
    scripted_api.script("GET", PATH, _reply("in-progress"))
    event = await _first_event(_trigger(deadline=time.time() + 0.05))
    assert event["status"] == "timeout"


async def test_missing_connection_is_an_error_event(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_TELNYX_DEFAULT", raising=False)
    event = await _first_event(_trigger(telnyx_conn_id="no_such_connection"))
    assert event["status"] == "error"
    assert "no_such_connection" in event["message"]


async def test_triggers_share_one_client_and_close_it_after_the_last(scripted_api, monkeypatch):
    scripted_api.script("GET", PATH, _reply("completed", "3"))
    created: list[recording_async.AsyncRecordingClient] = []
    original = recording_async.AsyncRecordingClient.__init__

    def counting_init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        created.append(self)

    monkeypatch.setattr(recording_async.AsyncRecordingClient, "__init__", counting_init)
    events = await asyncio.gather(*(_first_event(_trigger()) for _ in range(25)))
    assert [e["status"] for e in events] == ["success"] * 25
    assert len(created) == 1
    assert created[0]._client.is_closed
    assert shared_clients._SHARED == {}


async def test_client_is_released_before_the_event_is_handed_over(scripted_api):
    scripted_api.script("GET", PATH, _reply("completed", "3"))
    run = _trigger().run()
    event = await run.__anext__()  # dag.test() stops here, never closing the generator
    assert event.payload["status"] == "success"
    assert shared_clients._SHARED == {}
    await run.aclose()
