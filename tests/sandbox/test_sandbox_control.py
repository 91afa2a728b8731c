"""The /_sandbox control routes, stats counters and the Python-level Sandbox API."""

from __future__ import annotations

import json
import re
import time
from urllib.parse import quote

import pytest
import requests

from telnyx_provider.sandbox import Sandbox
from telnyx_provider.sandbox.stats import ALL_FAULT_KINDS

ROUTE_KEYS = {
    "POST /Calls/{call_sid}/Recordings",
    "GET /Calls/{call_sid}/Recordings",
    "POST /Calls/{call_sid}/Recordings/{sid}",
    "GET /Recordings/{sid}",
    "DELETE /Recordings/{sid}",
    "GET /Recordings",
}


def test_control_calls_and_hangup(sandbox_client, sandbox_wait):
    origin = sandbox_client.sandbox.origin
    created = requests.post(f"{origin}/_sandbox/calls", json={"silent": True}, timeout=5)
    assert created.status_code == 201
    call = created.json()["call_sid"]
    assert re.fullmatch(r"v3:[A-Za-z0-9_-]{54}", call)
    sid = sandbox_client.start_ok(call)["sid"]
    hung = requests.post(f"{origin}/_sandbox/calls/{quote(call, safe='')}/hangup", timeout=5)
    assert hung.status_code == 200
    assert sandbox_wait(lambda: sandbox_client.status(sid) == "absent")
    assert requests.post(f"{origin}/_sandbox/calls/v3%3Anope/hangup", timeout=5).status_code == 404

    timed = requests.post(f"{origin}/_sandbox/calls", data={"hangup_after": "0.1"}, timeout=5).json()[
        "call_sid"
    ]
    timed_sid = sandbox_client.start_ok(timed)["sid"]
    assert sandbox_wait(lambda: sandbox_client.status(timed_sid) == "completed")
    bad = requests.post(f"{origin}/_sandbox/calls", json={"hangup_after": "soon"}, timeout=5)
    assert bad.status_code == 400


def test_health_and_stats_routes(sandbox_server):
    origin = sandbox_server.origin
    assert requests.get(f"{origin}/_sandbox/health", timeout=5).json() == {"status": "ok"}
    over_http = requests.get(f"{origin}/_sandbox/stats", timeout=5).json()
    assert over_http.keys() == sandbox_server.stats().keys()
    assert requests.get(f"{origin}/_sandbox/nothing", timeout=5).status_code == 404


def test_stats_counts(sandbox_client, sandbox_wait):
    sandbox = sandbox_client.sandbox
    call = sandbox.create_call()
    first = sandbox_client.start_ok(call)["sid"]
    second = sandbox_client.start_ok(call)["sid"]
    sandbox_client.session.get(sandbox_client.call_recordings_url(call), timeout=5)
    sandbox_client.update(call, first, "stopped")
    for _ in range(3):
        sandbox_client.get(first)
    sandbox_client.get(second)
    sandbox_client.session.get(f"{sandbox_client.account}/Recordings.json", timeout=5)
    sandbox_client.session.delete(sandbox_client.recording_url(second), timeout=5)
    requests.get(f"{sandbox_client.account}/Recordings.json", timeout=5)  # 401, on a second connection

    stats = sandbox.stats()
    assert set(stats["requests_by_route"]) == ROUTE_KEYS
    assert stats["requests_by_route"]["POST /Calls/{call_sid}/Recordings"] == 2
    assert stats["requests_by_route"]["GET /Recordings/{sid}"] == 4
    assert stats["requests_by_route"]["GET /Recordings"] == 2
    assert stats["requests_total"] == 11
    assert stats["gets_per_recording"] == {first: 3, second: 1}
    assert stats["listings_per_recording"] == {first: 2, second: 2}  # call list + account list
    assert stats["updates_per_recording"] == {first: 1}  # the stop
    assert stats["starts_per_call"] == {call: 2}
    assert stats["connections_accepted"] == 2
    assert stats["faults_injected"] == dict.fromkeys(ALL_FAULT_KINDS, 0)
    assert stats["injections_pending"] == []
    assert (stats["callbacks_sent"], stats["callbacks_failed"]) == (0, 0)
    assert (stats["calls"], stats["recordings"]) == (1, 1)

    stopped_at = time.time()
    completed = sandbox_wait(lambda: sandbox.stats()["completed_at"])
    assert completed.keys() == {first}
    assert stopped_at - 1 < completed[first] <= time.time()
    assert completed[first] <= time.time()


def test_connection_json_and_generated_credentials():
    with Sandbox(port=0) as sandbox:
        conn = json.loads(sandbox.airflow_conn_json())
        assert conn == {
            "conn_type": "telnyx",
            "host": sandbox.base_url,
            "login": sandbox.account_sid,
            "password": sandbox.api_key,
            "extra": {"public_key": sandbox.public_key},
        }
        assert sandbox.connection_uri() == sandbox.airflow_conn_json()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v2", sandbox.base_url)
        assert sandbox.port > 0
        assert sandbox.api_key.startswith("KEYsandbox_")
        assert re.fullmatch(r"[0-9a-f-]{36}", sandbox.account_sid)
    other = Sandbox(port=0, api_key="k", account_sid="acct")
    assert (other.api_key, other.account_sid) == ("k", "acct")


def test_start_stop_lifecycle():
    sandbox = Sandbox(port=0)
    with pytest.raises(RuntimeError):
        _ = sandbox.base_url
    sandbox.start()
    url = f"{sandbox.origin}/_sandbox/health"
    session = requests.Session()
    assert session.get(url, timeout=5).status_code == 200  # a kept-alive connection stays open
    with pytest.raises(RuntimeError):
        sandbox.start()
    sandbox.stop()
    sandbox.stop()  # idempotent
    with pytest.raises(requests.ConnectionError):
        requests.get(url, timeout=5)
    with pytest.raises(requests.ConnectionError):
        session.get(url, timeout=5)
