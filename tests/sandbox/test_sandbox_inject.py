"""Deterministic faults: 504, resets before and after the request is carried out, scripted injections."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from telnyx_provider.sandbox import Sandbox
from telnyx_provider.sandbox.stats import FAULT_KINDS

START = "POST /Calls/{call_sid}/Recordings"
GET_ONE = "GET /Recordings/{sid}"
CALL_LIST = "GET /Calls/{call_sid}/Recordings"


def test_default_random_set_is_unchanged():
    assert FAULT_KINDS == ("429", "500", "503", "reset", "slow")
    with Sandbox(port=0) as sandbox:
        assert sandbox.stats()["faults"] == list(FAULT_KINDS)


def test_inject_hits_exactly_the_next_n_requests_of_the_route(sandbox_client):
    sandbox = sandbox_client.sandbox
    call = sandbox.create_call()
    sid = sandbox_client.start_ok(call)["sid"]
    sandbox.inject(GET_ONE, "503", count=3)
    assert sandbox.stats()["injections_pending"] == [
        {"route": GET_ONE, "kind": "503", "count": 3, "call_sid": None}
    ]
    # other routes are not hit
    assert sandbox_client.session.get(sandbox_client.call_recordings_url(call), timeout=5).status_code == 200
    statuses = [sandbox_client.get(sid).status_code for _ in range(5)]
    assert statuses == [503, 503, 503, 200, 200]
    stats = sandbox.stats()
    assert stats["faults_injected"]["503"] == 3
    assert stats["injections_pending"] == []
    assert stats["gets_per_recording"][sid] == 5


def test_injections_on_one_route_queue_up_and_beat_the_random_draw(sandbox_make):
    client = sandbox_make(fault_rate=1.0, faults=["429"])
    sandbox = client.sandbox
    call = sandbox.create_call()
    sandbox.inject(START, "500")
    sandbox.inject(START, "503", count=2)
    codes = [client.start(call).status_code for _ in range(4)]
    assert codes == [500, 503, 503, 429]  # then the random draw again
    assert sandbox.stats()["starts_per_call"] == {}


def test_injection_restricted_to_one_call(sandbox_client):
    sandbox = sandbox_client.sandbox
    target, other = sandbox.create_call(), sandbox.create_call()
    sandbox.inject(START, "500", count=1, call_sid=target)
    assert sandbox_client.start(other).status_code == 200
    assert sandbox_client.start(target).status_code == 500
    assert sandbox_client.start(target).status_code == 200
    assert sandbox.stats()["starts_per_call"] == {other: 1, target: 1}


def test_reset_after_carries_the_start_out_but_returns_no_reply(sandbox_client):
    sandbox = sandbox_client.sandbox
    call = sandbox.create_call()
    sandbox.inject(START, "reset_after")
    with pytest.raises(requests.ConnectionError):
        sandbox_client.start(call, RecordingTrack="inbound")
    stats = sandbox.stats()
    assert stats["starts_per_call"] == {call: 1}
    assert stats["faults_injected"]["reset_after"] == 1
    assert stats["resets_after_handling"] == 1
    listed = sandbox_client.session.get(sandbox_client.call_recordings_url(call), timeout=5).json()
    assert [rec["sid"] for rec in listed["recordings"]] == [item["sid"] for item in sandbox.started_on(call)]
    assert [item["track"] for item in sandbox.started_on(call)] == ["inbound"]  # lists have no track


def test_reset_before_drops_the_request_before_it_is_carried_out(sandbox_client):
    sandbox = sandbox_client.sandbox
    call = sandbox.create_call()
    sandbox.inject(START, "reset_before")
    with pytest.raises(requests.ConnectionError):
        sandbox_client.start(call)
    stats = sandbox.stats()
    assert stats["starts_per_call"] == {}
    assert stats["faults_injected"]["reset_before"] == 1
    assert stats["resets_after_handling"] == 0
    assert sandbox_client.start(call).status_code == 200  # a new connection works


def test_504_is_answered_after_the_request_was_carried_out(sandbox_client):
    sandbox = sandbox_client.sandbox
    call = sandbox.create_call()
    sandbox.inject(START, "504")
    reply = sandbox_client.start(call)
    assert reply.status_code == 504
    error = reply.json()["errors"][0]
    assert (error["code"], error["title"]) == ("10007", "Gateway timeout")
    assert sandbox.stats()["starts_per_call"] == {call: 1}
    assert sandbox.stats()["faults_injected"]["504"] == 1


def test_new_kinds_can_join_the_random_set(sandbox_make):
    client = sandbox_make(fault_rate=1.0, faults=["504"])
    call = client.sandbox.create_call()
    assert client.start(call).status_code == 504
    client.sandbox.set_faults(1.0, ["reset_before"])
    with pytest.raises(requests.ConnectionError):
        client.start(call)
    assert client.sandbox.stats()["starts_per_call"] == {call: 1}


@pytest.mark.parametrize(
    ("route", "kind", "count", "call_sid", "message"),
    [
        ("GET /Nope", "503", 1, None, "Unknown route"),
        (GET_ONE, "418", 1, None, "Unknown fault kind"),
        (GET_ONE, "503", 0, None, "count"),
        (GET_ONE, "503", 1, "v3:x", "no call sid"),
    ],
)
def test_inject_refuses_bad_arguments(route, kind, count, call_sid, message):
    sandbox = Sandbox(port=0)
    with pytest.raises(ValueError, match=message):
        sandbox.inject(route, kind, count, call_sid)


def test_inject_control_route(sandbox_client):
    sandbox = sandbox_client.sandbox
    call = sandbox.create_call()
    url = f"{sandbox.origin}/_sandbox/inject"
    reply = requests.post(
        url, json={"route": CALL_LIST, "kind": "429", "count": 2, "call_sid": call}, timeout=5
    )
    assert reply.status_code == 200
    assert reply.json() == {
        "injections_pending": [{"route": CALL_LIST, "kind": "429", "count": 2, "call_sid": call}]
    }
    codes = [
        sandbox_client.session.get(sandbox_client.call_recordings_url(call), timeout=5).status_code
        for _ in range(3)
    ]
    assert codes == [429, 429, 200]
    refused = requests.post(url, json={"route": "GET /Nope", "kind": "429"}, timeout=5)
    assert refused.status_code == 422
    assert "Unknown route" in refused.json()["errors"][0]["detail"]
    assert requests.post(url, json={"kind": "429"}, timeout=5).status_code == 400
    assert (
        requests.post(url, json={"route": CALL_LIST, "kind": "429", "count": "x"}, timeout=5).status_code
        == 400
    )


def test_slow_after_carries_the_start_out_before_the_held_reply(sandbox_make):
    client = sandbox_make(slow_seconds=1.0)
    sandbox = client.sandbox
    call = sandbox.create_call()
    sandbox.inject(START, "slow_after", call_sid=call)
    replies: list[int] = []
    sender = threading.Thread(target=lambda: replies.append(client.start(call).status_code))
    sender.start()
    # The start is carried out while its reply is still held: a client dying now leaves a recording behind.
    deadline = time.monotonic() + 5
    while not sandbox.stats()["starts_per_call"].get(call) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sandbox.stats()["starts_per_call"] == {call: 1}
    assert replies == []
    sender.join(5)
    assert replies == [200]
    assert sandbox.stats()["faults_injected"]["slow_after"] == 1
