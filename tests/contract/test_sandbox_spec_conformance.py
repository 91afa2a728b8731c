"""A strict sandbox (``strict_schema=True``) answers exactly as Telnyx's response schemas say, in the flows
the provider runs: start (all parameters and defaults), fetch, both lists over several pages, update (pause,
resume, stop), delete, transcriptions (list over pages, fetch, delete), the async client, the operator and
the sensor, and the errors 401, 404, 405, 415, 422, 429, 500, 503, 504.

Every reply is judged by the suite's audit (``tests/conftest.py``, ``tests/spec_conformance.py``): any field,
type or value the spec does not allow fails the test. These tests also check that the audit saw the replies
they rely on, that dates follow ``date_format``, and that a field the spec lacks is caught (negative checks).
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timedelta, timezone

import pytest
import requests

from telnyx_provider.errors import TelnyxApiError
from telnyx_provider.hooks.recording import RecordingHook
from telnyx_provider.retry import RetryPolicy
from telnyx_provider.sandbox import Sandbox
from tests.conftest import DATE_FORMATS
from tests.spec_conformance import ReplyAudit, SpecReferee, close_objects, load_spec, telnyx_referee

RFC2822 = re.compile(r"^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} \+0000$")
ISO8601 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
FAST = RetryPolicy(max_retries=3, max_wait=0.01, budget=10, initial_wait=0.001)
#: The spec's operations the provider uses (the conference routes it does not), with their success status.
PROVIDER_OPERATIONS = {
    ("POST", "/texml/Accounts/{account_sid}/Calls/{call_sid}/Recordings.json", 200),
    ("GET", "/texml/Accounts/{account_sid}/Calls/{call_sid}/Recordings.json", 200),
    ("POST", "/texml/Accounts/{account_sid}/Calls/{call_sid}/Recordings/{recording_sid}.json", 200),
    ("GET", "/texml/Accounts/{account_sid}/Recordings/{recording_sid}.json", 200),
    ("DELETE", "/texml/Accounts/{account_sid}/Recordings/{recording_sid}.json", 204),
    ("GET", "/texml/Accounts/{account_sid}/Recordings.json", 200),
    ("GET", "/texml/Accounts/{account_sid}/Transcriptions.json", 200),
    ("GET", "/texml/Accounts/{account_sid}/Transcriptions/{recording_transcription_sid}.json", 200),
    ("DELETE", "/texml/Accounts/{account_sid}/Transcriptions/{recording_transcription_sid}.json", 204),
}


@pytest.fixture(params=DATE_FORMATS)
def strict(request, monkeypatch):
    """A strict sandbox (pages of at most 2) that ``telnyx_default`` points at."""
    with Sandbox(
        port=0, processing_delay=0.1, max_page_size=2, strict_schema=True, date_format=request.param
    ) as sb:
        monkeypatch.setenv("AIRFLOW_CONN_TELNYX_DEFAULT", sb.airflow_conn_json())
        yield sb


@pytest.fixture
def hook(strict):
    hook = RecordingHook(retry_policy=FAST)
    yield hook
    hook.close()


def until(condition, limit: float = 20.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def seen(audit: ReplyAudit) -> set[tuple[str, str, int]]:
    """``(method, spec path template, status)`` of every judged reply."""
    found = set()
    for reply in audit.judged():
        operation = telnyx_referee().operation(reply.method, reply.path)
        found.add((reply.method, operation.template if operation else reply.path, reply.status))
    return found


def raw(sandbox: Sandbox, method: str, path: str, **kwargs) -> requests.Response:
    headers = {"Authorization": f"Bearer {sandbox.api_key}", **kwargs.pop("headers", {})}
    url = f"{sandbox.base_url}/texml/Accounts/{sandbox.account_sid}{path}"
    return requests.request(method, url, headers=headers, timeout=10, **kwargs)


def test_the_hooks_whole_surface_gets_only_spec_shaped_replies(strict, hook, sandbox_replies):
    call = strict.create_call(transcribe=True, audio_seconds=4)
    started = hook.start_call_recording(
        call,
        play_beep=False,
        recording_status_callback="http://127.0.0.1:9/callbacks",
        recording_status_callback_event=["in-progress", "completed", "absent"],
        recording_status_callback_method="POST",
        recording_channels="single",
        recording_track="inbound",
        send_recording_url=False,
    )
    assert started["track"] == "inbound"
    assert "status" not in started  # the create body has no status
    others = [hook.start_call_recording(call)["sid"] for _ in range(3)]  # defaults; the call now has 4
    sid = started["sid"]

    fetched = hook.get_recording(sid)
    assert "track" not in fetched  # the fetch body has no track
    assert fetched["status"] == "in-progress"
    assert "media_url" not in fetched  # not nullable in the spec: absent until there is audio
    listed = hook.list_call_recordings(call)  # pages of 2
    assert [r["sid"] for r in listed] == [sid, *others]
    assert all("track" not in r for r in listed)

    for status in ("paused", "in-progress", "stopped"):
        updated = hook.update_call_recording(call, sid, status)
        assert (updated["sid"], "status" in updated) == (sid, False)
    strict.hangup(call)
    final = until(lambda: (r := hook.get_recording(sid))["status"] == "completed" and r)
    assert final["media_url"].startswith(strict.origin)
    account_wide = list(hook.iter_recordings(page_size=1))
    assert {r["sid"] for r in account_wide} == {sid, *others}

    transcriptions = until(
        lambda: [t for t in hook.list_transcriptions(page_size=1) if t["status"] == "completed"]
    )
    assert len(transcriptions) >= 1
    one = hook.get_transcription(transcriptions[0]["sid"])
    assert one["transcription_text"]
    hook.delete_transcription(one["sid"])
    hook.delete_recording(sid)

    pattern = ISO8601 if strict.date_format == "iso8601" else RFC2822
    reply = raw(strict, "GET", f"/Recordings/{others[0]}.json").json()
    assert all(pattern.match(reply[name]) for name in ("date_created", "date_updated", "start_time"))

    assert seen(sandbox_replies) >= PROVIDER_OPERATIONS
    assert len(sandbox_replies.judged()) >= 25
    assert sandbox_replies.violations() == []


async def test_the_async_client_gets_only_spec_shaped_replies(strict, sandbox_replies):
    from telnyx_provider.connection import TelnyxConnectionConfig
    from telnyx_provider.hooks.recording_async import AsyncRecordingClient

    config = TelnyxConnectionConfig(
        conn_id="t", base_url=strict.base_url, api_key=strict.api_key, account_sid=strict.account_sid
    )
    call = strict.create_call()
    since = datetime.now(timezone.utc) - timedelta(seconds=5)
    sids = [RecordingHook(retry_policy=FAST).start_call_recording(call)["sid"] for _ in range(3)]
    client = AsyncRecordingClient(config, retry_policy=FAST)
    try:
        assert (await client.get_recording(sids[0]))["status"] == "in-progress"
        listing = await client.list_recordings_created_since(since, page_size=2)
        assert sorted(r["sid"] for r in listing) == sorted(sids)
        stopped = await client.stop_call_recording(call, sids[0])
        assert stopped["sid"] == sids[0]
    finally:
        await client.aclose()
    assert len(sandbox_replies.judged()) >= 8
    assert sandbox_replies.violations() == []


def test_the_operator_and_the_sensor_get_only_spec_shaped_replies(strict, sandbox_replies):
    from telnyx_provider.operators.recording import StartCallRecordingOperator
    from telnyx_provider.sensors.recording import RecordingCompletedSensor
    from tests.conftest import hang_up_once_recorded

    call = strict.create_call()
    hang_up_once_recorded(strict, call, after=0.3)
    final = StartCallRecordingOperator(
        task_id="start", call_sid=call, wait_for_completion=True, poll_interval=0.1, timeout=30
    ).execute(context={})
    assert final["status"] == "completed"
    sensor = RecordingCompletedSensor(
        task_id="wait", recording_uri=final["uri"], poke_interval=0.1, timeout=30
    )
    assert sensor.poke(context={}).is_done
    assert sandbox_replies.violations() == []


def test_error_replies_are_spec_shaped(strict, hook, sandbox_replies):
    call = strict.create_call()
    assert (
        raw(strict, "GET", "/Recordings.json", headers={"Authorization": "Bearer wrong"}).status_code == 401
    )
    with pytest.raises(TelnyxApiError) as missing:
        hook.get_recording("6a09cdc3-8948-47f0-aa62-74ac943d6c58")
    assert missing.value.status == 404
    assert raw(strict, "DELETE", "/Recordings.json").status_code == 405
    bad_enum = raw(strict, "POST", f"/Calls/{call}/Recordings.json", data={"RecordingTrack": "sideways"})
    assert bad_enum.status_code == 422
    as_json = raw(strict, "POST", f"/Calls/{call}/Recordings.json", json={"RecordingTrack": "inbound"})
    assert as_json.status_code == 415
    sid = hook.start_call_recording(call)["sid"]
    for kind in ("429", "500", "503", "504"):
        strict.inject("GET /Recordings/{sid}", kind)
        assert hook.get_recording(sid)["sid"] == sid  # retried past the fault
    assert {401, 404, 405, 415, 422, 429, 500, 503, 504} <= {
        reply.status for reply in sandbox_replies.judged()
    }
    assert sandbox_replies.violations() == []


# -- negative checks: the referee catches what the spec does not allow -----------------------------------


def test_a_field_the_spec_lacks_is_caught_on_a_fetch_and_in_list_items(
    strict, hook, sandbox_replies, monkeypatch
):
    from telnyx_provider.sandbox import schema

    monkeypatch.setattr(schema, "GET_FIELDS", schema.GET_FIELDS | {"track"})
    call = strict.create_call()
    sid = hook.start_call_recording(call)["sid"]
    hook.get_recording(sid)
    hook.list_call_recordings(call)
    problems = sandbox_replies.violations()
    sandbox_replies.forget()  # provoked on purpose: not this test's failure
    assert any(
        f"/Recordings/{sid}.json -> 200: (body): Additional properties" in p and "'track'" in p
        for p in problems
    )
    assert any(
        "/Recordings.json -> 200: recordings/0: Additional properties" in p and "'track'" in p
        for p in problems
    )


def test_the_pre_strict_sandbox_would_be_caught(monkeypatch):
    """The sandbox without ``strict_schema`` sends ``track`` on fetches, nulls where the spec has strings,
    both spellings of ``subresources_uris``, ``status`` in start replies: each is a violation."""
    with Sandbox(port=0, processing_delay=0.1, strict_schema=False) as loose:
        call = loose.create_call()
        started = raw(loose, "POST", f"/Calls/{call}/Recordings.json")
        fetched = raw(loose, "GET", f"/Recordings/{started.json()['sid']}.json")
    referee = telnyx_referee()
    start_problems = " ".join(referee.judge("POST", started.request.path_url, 200, started.content))
    fetch_problems = " ".join(referee.judge("GET", fetched.request.path_url, 200, fetched.content))
    assert "'status'" in start_problems
    assert "'track'" in fetch_problems
    assert "'subresource_uris'" in fetch_problems
    assert "media_url: None is not of type 'string'" in fetch_problems


def test_the_referee_checks_types_values_dates_and_empty_bodies():
    referee = telnyx_referee()
    path = "/v2/texml/Accounts/a/Recordings/r.json"
    good = {
        "sid": "r",
        "status": "completed",
        "channels": 2,
        "date_created": "Fri, 11 Aug 2023 19:12:11 +0000",
    }
    assert referee.judge("GET", path, 200, json.dumps(good).encode(), date_format="rfc2822") == []
    assert referee.judge("GET", path, 200, json.dumps(good).encode(), date_format="iso8601")  # wrong format
    assert referee.judge("GET", path, 200, json.dumps({**good, "channels": 3}).encode())
    assert referee.judge("GET", path, 200, json.dumps({**good, "status": "lost"}).encode())
    assert referee.judge("DELETE", path, 204, b"") == []
    assert referee.judge("DELETE", path, 204, b"{}")  # the spec's 204 has no body
    assert referee.judge("GET", path, 201, b"{}")  # not a status the spec lists
    error = {"errors": [{"code": "10005", "title": "Resource not found", "detail": "x"}]}
    assert referee.judge("GET", path, 404, json.dumps(error).encode()) == []
    assert referee.judge("GET", path, 404, json.dumps({**error, "meta": {}}).encode())


def test_close_objects_closes_nested_schemas_but_keeps_explicit_rules():
    spec = load_spec()
    closed = close_objects(spec["components"]["schemas"])
    assert closed["TexmlGetCallRecordingResponseBody"]["additionalProperties"] is False
    assert closed["TexmlRecordingSubresourcesUris"]["additionalProperties"] is False
    assert (
        closed["ConferenceRecordingResource"]["properties"]["subresource_uris"]["additionalProperties"]
        is True
    )
    assert SpecReferee(spec).operation("GET", "/v2/texml/Accounts/a/Calls/c/Recordings.json") is not None
