"""Waiting for an interval's not-final recordings on the triggerer: one trigger, one listing per poll for all.

RecordingsIntervalTrigger runs against the sandbox over real HTTP (the async client); the operator defers to
it and comes back through ``execute_complete``.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
import requests

from telnyx_provider._compat import AirflowException
from telnyx_provider.triggers.archive import MISSES_BEFORE_GONE, RecordingsIntervalTrigger
from tests.transfers.archive_world import archive_operator, day, finals_of, listed, media_gets, route


def not_final(sandbox) -> dict[str, dict]:
    return {sid: item for sid, item in listed(sandbox).items() if item["status"] in ("in-progress", "paused")}


def trigger_for(sids, **kwargs) -> RecordingsIntervalTrigger:
    bounds = day(1)
    kwargs.setdefault("poll_interval", 0.1)
    kwargs.setdefault("max_retries", 2)
    kwargs.setdefault("retry_max_wait", 0.05)
    return RecordingsIntervalTrigger(
        list(sids), bounds["date_from"].isoformat(), bounds["date_to"].isoformat(), **kwargs
    )


async def only_event(trigger) -> dict:
    events = [event async for event in trigger.run()]
    assert len(events) == 1
    return events[0].payload


def after_listings(sandbox, count: int, action) -> threading.Thread:
    """Run ``action`` once the account was listed ``count`` more times (the trigger has looked)."""
    start = route(sandbox, "GET /Recordings")

    def watch() -> None:
        deadline = time.monotonic() + 30
        while route(sandbox, "GET /Recordings") < start + count and time.monotonic() < deadline:
            time.sleep(0.01)
        action()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_serialize_round_trip_is_json_and_keyless(history):
    trigger = trigger_for(["b", "a"], account_sid="acct", deadline=1.9e9, page_size=10, retry_budget=3)
    classpath, kwargs = trigger.serialize()
    assert classpath == "telnyx_provider.triggers.archive.RecordingsIntervalTrigger"
    text = json.dumps(kwargs)
    assert history.api_key not in text
    rebuilt = RecordingsIntervalTrigger(**json.loads(text))
    assert rebuilt.serialize() == (classpath, kwargs)
    assert rebuilt.recording_sids == ["a", "b"]


async def test_one_listing_per_poll_watches_every_recording_until_all_are_final(history):
    waiting = not_final(history)
    assert len(waiting) == 2
    lists = route(history, "GET /Recordings")
    gets = route(history, "GET /Recordings/{sid}")

    def hang_up() -> None:
        for item in waiting.values():
            history.hangup(item["call_sid"])

    after_listings(history, 2, hang_up)
    event = await only_event(trigger_for(waiting))

    assert event == {"status": "final", "recording_sids": sorted(waiting)}
    polls = route(history, "GET /Recordings") - lists
    assert polls >= 3  # two before the hang-up, one after
    assert route(history, "GET /Recordings/{sid}") == gets  # never one GET per recording
    assert "media_url" not in json.dumps(event)


async def test_it_gives_up_at_the_deadline_naming_what_is_still_pending(history):
    waiting = not_final(history)
    began = time.monotonic()
    event = await only_event(trigger_for(waiting, deadline=time.time() + 0.5))
    assert event == {"status": "timeout", "pending": sorted(waiting)}
    assert time.monotonic() - began >= 0.4


async def test_an_outage_does_not_end_the_wait(history):
    waiting = not_final(history)
    history.set_faults(1.0, ["503"])

    def end_outage_and_calls() -> None:
        history.set_faults(0.0)
        for item in waiting.values():
            history.hangup(item["call_sid"])

    after_listings(history, 4, end_outage_and_calls)  # two listings, each with its retries, fail
    event = await only_event(trigger_for(waiting, max_retries=1))
    assert event["status"] == "final"


async def test_a_recording_deleted_meanwhile_counts_as_gone(history):
    waiting = not_final(history)
    first, second = sorted(waiting)
    deleted = requests.delete(  # by someone else
        f"{history.base_url}/texml/Accounts/{history.account_sid}/Recordings/{first}.json",
        headers={"Authorization": f"Bearer {history.api_key}"},
        timeout=5,
    )
    assert deleted.status_code == 204
    history.hangup(waiting[second]["call_sid"])
    lists = route(history, "GET /Recordings")

    event = await only_event(trigger_for(waiting))

    assert event["status"] == "final"
    assert route(history, "GET /Recordings") - lists >= MISSES_BEFORE_GONE


async def test_a_refused_key_ends_the_wait_with_an_error(history, monkeypatch):
    conn = json.loads(history.airflow_conn_json())
    conn["password"] = "KEYwrong"
    monkeypatch.setenv("AIRFLOW_CONN_TELNYX_DEFAULT", json.dumps(conn))
    event = await only_event(trigger_for(not_final(history)))
    assert event["status"] == "error"
    assert "401" in event["message"]
    assert "KEYwrong" not in event["message"]


async def test_the_operator_defers_once_and_archives_the_rest_when_the_trigger_fires(history, tmp_path):
    try:
        from airflow.sdk.exceptions import TaskDeferred
    except ImportError:  # pragma: no cover - Airflow 3.1
        from airflow.exceptions import TaskDeferred

    waiting = not_final(history)
    op = archive_operator(dst=str(tmp_path), not_final="wait", deferrable=True, poll_interval=0.1, **day(1))

    with pytest.raises(TaskDeferred) as deferred:
        op.execute({})

    trigger = deferred.value.trigger
    assert isinstance(trigger, RecordingsIntervalTrigger)
    assert trigger.recording_sids == sorted(waiting)
    assert deferred.value.method_name == "execute_complete"
    manifest = json.loads(next((tmp_path / "_manifests").glob("*.json")).read_text())
    assert {item["recording_sid"] for item in manifest["not_final"]} == set(
        waiting
    )  # written before deferring
    first_copies = media_gets(history)

    for item in waiting.values():
        history.hangup(item["call_sid"])
    rebuilt = RecordingsIntervalTrigger(**json.loads(json.dumps(trigger.serialize()[1])))
    event = await only_event(rebuilt)
    result = op.execute_complete({}, event)

    assert result["not_final"] == 0
    assert result["downloaded"] == 2  # only those: what was stored before deferring is not read again
    assert media_gets(history) == first_copies + 2
    assert result["recordings"] == len(finals_of(history, 1))


@pytest.mark.parametrize("event", [None, {"status": "odd"}, {"status": "error", "message": "HTTP 401"}])
def test_a_bad_or_failed_event_fails_the_task(history, tmp_path, event):
    op = archive_operator(dst=str(tmp_path), not_final="wait", deferrable=True, **day(1))
    with pytest.raises(AirflowException):
        op.execute_complete({}, event)
    assert history.stats()["requests_total"] == 0
