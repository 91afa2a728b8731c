"""RecordingHook against the TeXML sandbox over real HTTP on loopback."""

from __future__ import annotations

import io
import json
import wave

import pytest
import requests

from telnyx_provider.errors import TelnyxApiError
from telnyx_provider.hooks.recording import RecordingHook
from tests.sandbox.conftest import wait_for


@pytest.fixture
def hook(sandbox):
    hook = RecordingHook()
    yield hook
    hook.close()


def test_full_recording_lifecycle(sandbox, hook):
    call_sid = sandbox.create_call()
    started = hook.start_call_recording(
        call_sid,
        play_beep=False,
        recording_channels="single",
        recording_track="inbound",
        recording_status_callback_event="in-progress completed",
        send_recording_url=True,
    )
    assert "status" not in started  # Telnyx's create reply has no status (its schema)
    assert started["duration"] is None
    assert started["call_sid"] == call_sid
    assert started["channels"] == 1
    assert started["track"] == "inbound"
    assert started["uri"].endswith(f"/Calls/{call_sid}/Recordings/{started['sid']}.json")
    assert "T" in started["start_time"]  # RFC 2822 from the service, ISO 8601 for us
    sid = started["sid"]

    fetched = hook.get_recording(sid)
    assert fetched["uri"].endswith(f"/Accounts/{sandbox.account_sid}/Recordings/{sid}.json")
    assert [r["sid"] for r in hook.list_call_recordings(call_sid)] == [sid]

    # Update replies have the create schema (no status): the state is read back.
    for status in ("paused", "in-progress"):
        assert hook.update_call_recording(call_sid, sid, status)["sid"] == sid
        assert hook.get_recording(sid)["status"] == status
    assert hook.stop_call_recording(call_sid, sid)["sid"] == sid
    assert hook.get_recording(sid)["status"] in ("stopped", "completed")

    final = wait_for(lambda: (r := hook.get_recording(sid))["status"] == "completed" and r)
    assert isinstance(final["duration"], int)
    media = requests.get(final["media_url"], timeout=5)  # a pre-signed link: no auth header
    assert media.status_code == 200
    with wave.open(io.BytesIO(media.content)) as audio:
        assert audio.getnframes() > 0
    json.dumps(final)

    hook.delete_recording(sid)
    with pytest.raises(TelnyxApiError) as raised:
        hook.get_recording(sid)
    assert raised.value.status == 404


def test_recording_ends_when_the_call_hangs_up(sandbox, hook):
    call_sid = sandbox.create_call()
    sid = hook.start_call_recording(call_sid)["sid"]
    sandbox.hangup(call_sid)
    final = wait_for(lambda: (r := hook.get_recording(sid))["status"] == "completed" and r)
    assert final["duration"] >= 1
    assert final["channels"] == 2  # the API's default: dual


def test_start_on_a_call_that_hung_up_explains_404_and_is_not_retried(sandbox, hook):
    call_sid = sandbox.create_call()
    sandbox.hangup(call_sid)
    with pytest.raises(TelnyxApiError) as raised:
        hook.start_call_recording(call_sid)
    assert raised.value.status == 404
    assert raised.value.code is not None
    assert "organization id" in str(raised.value)
    assert sandbox.stats()["requests_by_route"]["POST /Calls/{call_sid}/Recordings"] == 1


def test_wrong_key_is_a_401_that_names_no_key(sandbox, monkeypatch):
    conn = json.loads(sandbox.airflow_conn_json())
    conn["password"] = "KEYwrong_but_secret_value"
    monkeypatch.setenv("AIRFLOW_CONN_TELNYX_DEFAULT", json.dumps(conn))
    hook = RecordingHook()
    ok, message = hook.test_connection()
    assert not ok
    assert "401" in message
    assert "KEYwrong_but_secret_value" not in message
    with pytest.raises(TelnyxApiError) as raised:
        hook.get_recording("00000000-0000-0000-0000-000000000000")
    assert raised.value.status == 401
    assert "KEYwrong_but_secret_value" not in repr(raised.value)


def test_test_connection_succeeds(sandbox, hook):
    ok, message = hook.test_connection()
    assert ok, message
    assert sandbox.account_sid in message


def test_iter_recordings_pages_through_the_account(sandbox, hook):
    sids = {hook.start_call_recording(sandbox.create_call())["sid"] for _ in range(5)}
    listed = [r["sid"] for r in hook.iter_recordings(page_size=2)]
    assert sorted(listed) == sorted(sids)
    assert sandbox.stats()["requests_by_route"]["GET /Recordings"] == 3


def test_one_session_reuses_its_connection(sandbox, hook):
    call_sid = sandbox.create_call()
    sid = hook.start_call_recording(call_sid)["sid"]
    before = sandbox.stats()["connections_accepted"]
    for _ in range(20):
        hook.get_recording(sid)
    assert sandbox.stats()["connections_accepted"] == before
    assert sandbox.stats()["gets_per_recording"][sid] == 20
