"""Recording status callbacks, received by a small stdlib HTTP server."""

from __future__ import annotations

import re
import time

import pytest
import requests


def test_post_callbacks_for_requested_events(sandbox_client, sandbox_receiver, sandbox_wait):
    sandbox = sandbox_client.sandbox
    call = sandbox.create_call()
    sid = sandbox_client.start_ok(
        call,
        RecordingStatusCallback=f"{sandbox_receiver.url}/cb",
        RecordingStatusCallbackEvent="in-progress completed",
    )["sid"]
    first = sandbox_wait(lambda: sandbox_receiver.items())[0]
    assert (first.method, first.path) == ("POST", "/cb")
    assert first.content_type == "application/x-www-form-urlencoded"
    assert first.form["RecordingStatus"] == "in-progress"
    assert "RecordingUrl" not in first.form
    sandbox.hangup(call)
    final = sandbox_wait(lambda: len(sandbox_receiver.items()) == 2 and sandbox_receiver.items()[1])
    link = final.form.pop("RecordingUrl")
    assert re.fullmatch(
        rf"{re.escape(sandbox.origin)}/media/{sid}\.wav\?Expires=\d+&Signature=[0-9a-f]{{64}}", link
    )
    assert requests.get(link, timeout=5).headers["Content-Type"] == "audio/wav"
    assert final.form == {
        "AccountSid": sandbox.account_sid,
        "CallSid": call,
        "RecordingSid": sid,
        "RecordingStatus": "completed",
        "RecordingDuration": sandbox_client.get(sid).json()["duration"],
        "RecordingChannels": "2",
        "RecordingSource": "StartCallRecordingAPI",
        "RecordingStartTime": sandbox_client.get(sid).json()["start_time"],
    }
    assert sandbox_wait(lambda: sandbox.stats()["callbacks_sent"] == 2)


def test_get_callback_default_event_without_url(sandbox_client, sandbox_receiver, sandbox_wait):
    """Default events: only 'completed'. SendRecordingUrl=false: no RecordingUrl. GET: fields in the query."""
    sandbox = sandbox_client.sandbox
    call = sandbox.create_call()
    sid = sandbox_client.start_ok(
        call,
        RecordingStatusCallback=f"{sandbox_receiver.url}/get?token=t",
        RecordingStatusCallbackMethod="GET",
        SendRecordingUrl="false",
    )["sid"]
    sandbox_client.update(call, sid, "stopped")
    received = sandbox_wait(lambda: sandbox_receiver.items())
    assert len(received) == 1
    assert (received[0].method, received[0].path) == ("GET", "/get")
    assert received[0].query["token"] == "t"
    assert received[0].query["RecordingStatus"] == "completed"
    assert received[0].query["RecordingSid"] == sid
    assert "RecordingUrl" not in received[0].query
    assert received[0].query["RecordingChannels"] == "2"


def test_callback_fires_without_any_read(sandbox_make, sandbox_receiver, sandbox_wait):
    """The scheduler announces a length-ended recording although nobody polls it."""
    client = sandbox_make(recording_seconds=0.1, processing_delay=0.1)
    client.start_ok(client.sandbox.create_call(), RecordingStatusCallback=f"{sandbox_receiver.url}/cb")
    received = sandbox_wait(lambda: sandbox_receiver.items())
    assert received[0].form["RecordingStatus"] == "completed"
    assert client.sandbox.stats()["requests_by_route"] == {"POST /Calls/{call_sid}/Recordings": 1}


def test_absent_callback_only_when_asked(sandbox_client, sandbox_receiver, sandbox_wait):
    sandbox = sandbox_client.sandbox
    silent_a, silent_b = sandbox.create_call(silent=True), sandbox.create_call(silent=True)
    sandbox_client.start_ok(
        silent_a, RecordingStatusCallback=f"{sandbox_receiver.url}/a"
    )  # default: completed
    sandbox_client.start_ok(
        silent_b, RecordingStatusCallback=f"{sandbox_receiver.url}/b", RecordingStatusCallbackEvent="absent"
    )
    sandbox.hangup(silent_a)
    sandbox.hangup(silent_b)
    # /a falls due first and callbacks leave in order from one thread, so once /b has arrived,
    # a callback for /a would have arrived before it.
    received = sandbox_wait(lambda: sandbox_receiver.items())
    assert [item.path for item in received] == ["/b"]
    assert received[0].form["RecordingStatus"] == "absent"
    assert received[0].form["RecordingDuration"] == "0"
    assert "RecordingUrl" not in received[0].form


def test_failed_callbacks_are_counted(sandbox_client, sandbox_receiver, sandbox_wait):
    sandbox = sandbox_client.sandbox
    sandbox_client.start_ok(
        sandbox.create_call(),
        RecordingStatusCallback=f"{sandbox_receiver.url}/fail",
        RecordingStatusCallbackEvent="in-progress",
    )
    sandbox_client.start_ok(
        sandbox.create_call(),
        RecordingStatusCallback="http://127.0.0.1:9/refused",
        RecordingStatusCallbackEvent="in-progress",
    )
    assert sandbox_wait(lambda: sandbox.stats()["callbacks_failed"] == 2)
    assert sandbox.stats()["callbacks_sent"] == 0


def test_held_callbacks_come_late_and_in_order_signed_when_they_go_out(
    sandbox_client, sandbox_receiver, sandbox_wait
):
    sandbox = sandbox_client.sandbox
    call = sandbox.create_call()
    sandbox.hold_callbacks()
    first = sandbox_client.start_ok(
        call, RecordingStatusCallback=f"{sandbox_receiver.url}/cb", RecordingStatusCallbackEvent="in-progress"
    )["sid"]
    second = sandbox_client.start_ok(
        call, RecordingStatusCallback=f"{sandbox_receiver.url}/cb", RecordingStatusCallbackEvent="in-progress"
    )["sid"]
    # Held: the service has both recordings, the receiver has heard of neither.
    assert sandbox_client.status(first) == sandbox_client.status(second) == "in-progress"
    assert sandbox_receiver.items() == []
    assert sandbox.stats()["callbacks_sent"] == 0
    held_at = int(time.time())
    sandbox.release_callbacks()
    got = sandbox_wait(lambda: len(sandbox_receiver.items()) == 2 and sandbox_receiver.items())
    assert [item.form["RecordingSid"] for item in got] == [first, second]
    assert all(int(item.headers["telnyx-timestamp"]) >= held_at for item in got)


def test_dropped_callbacks_never_arrive_and_count_as_failed(sandbox_client, sandbox_receiver, sandbox_wait):
    sandbox = sandbox_client.sandbox
    call = sandbox.create_call()
    sandbox.drop_callbacks(1)
    form = {
        "RecordingStatusCallback": f"{sandbox_receiver.url}/cb",
        "RecordingStatusCallbackEvent": "in-progress",
    }
    dropped = sandbox_client.start_ok(call, **form)["sid"]
    kept = sandbox_client.start_ok(call, **form)["sid"]
    sandbox_wait(lambda: sandbox.stats()["callbacks_sent"] == 1)
    assert [item.form["RecordingSid"] for item in sandbox_receiver.items()] == [kept]
    assert sandbox.stats()["callbacks_failed"] == 1
    assert dropped != kept
    with pytest.raises(ValueError, match="count"):
        sandbox.drop_callbacks(0)


def test_stopping_a_sandbox_with_held_callbacks_does_not_hang(sandbox_make, sandbox_receiver):
    client = sandbox_make(processing_delay=0.1)
    call = client.sandbox.create_call()
    client.sandbox.hold_callbacks()
    client.start_ok(
        call, RecordingStatusCallback=f"{sandbox_receiver.url}/cb", RecordingStatusCallbackEvent="in-progress"
    )
    began = time.monotonic()
    client.sandbox.stop()
    assert time.monotonic() - began < 2.0
    assert sandbox_receiver.items() == []
