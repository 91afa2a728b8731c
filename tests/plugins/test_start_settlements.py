"""The receiver's side of settled exact starts: a settlement (authenticated by the connection's API key)
makes the receiver stop a superseded recording whose callback comes late, and nothing else.

The stop itself is a recorded callable here; ``tests/reliability/test_reliability_start_review.py`` runs the
real one against the sandbox, after the start has ended.
"""

from __future__ import annotations

import json
import logging
import os
import time
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient

from telnyx_provider.exact_start import (
    SETTLEMENT_MAC_HEADER,
    new_token,
    settlement_body,
    settlement_mac,
)
from telnyx_provider.plugins.callbacks import ReceiverSettings, create_app
from telnyx_provider.plugins.recording_events import CallbackKey, load_connection_key
from telnyx_provider.plugins.start_settlements import NAMESPACE
from tests.conftest import ACCOUNT_SID
from tests.plugins.test_callbacks import callback, post
from tests.receiver_app import sqlite_store

API_KEY = "KEYsettlement_0123456789_never_shown"


@pytest.fixture
def store(tmp_path):
    return sqlite_store(str(tmp_path / "receiver.db"))


class Stops:
    """Records each stop asked for; ``fail`` makes the next ones raise."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str, str, str]] = []
        self.fail = 0

    def __call__(self, conn_id: str, account_sid: str, call_sid: str, recording_sid: str) -> None:
        self.asked.append((conn_id, account_sid, call_sid, recording_sid))
        if self.fail:
            self.fail -= 1
            raise RuntimeError("HTTP 503 from Telnyx")


@pytest.fixture
def stops():
    return Stops()


@pytest.fixture
def client(signer, store, stops, monkeypatch):
    conn = json.loads(os.environ["AIRFLOW_CONN_TELNYX_DEFAULT"])
    monkeypatch.setenv("AIRFLOW_CONN_TELNYX_DEFAULT", json.dumps({**conn, "password": API_KEY}))
    settings = ReceiverSettings(tolerance=300, store=store, store_event=lambda *_: 1, stop_recording=stops)
    with TestClient(create_app(settings)) as client:
        yield client


def settle(client, call_sid, kept, tokens, *, key=API_KEY, params=None, mac=None):
    body = settlement_body(call_sid, kept, tokens)
    headers = {SETTLEMENT_MAC_HEADER: mac if mac is not None else settlement_mac(key, body)}
    return client.post("/starts/settled", content=body, headers=headers, params=params)


def deliver(client, signer, fields, token, timestamp=None):
    body = urlencode(fields).encode()
    return post(client, signer, body, params={"start_token": token}, timestamp=timestamp)


def test_a_late_callback_of_a_superseded_attempt_is_stopped_and_the_kept_one_is_not(
    client, signer, stops, caplog
):
    first, second = new_token(), new_token()
    late = callback("in-progress")
    kept = callback("in-progress", CallSid=late["CallSid"])
    caplog.set_level(logging.INFO, logger="telnyx_provider")

    assert settle(client, late["CallSid"], kept["RecordingSid"], [first, second]).status_code == 200
    assert deliver(client, signer, kept, second).status_code == 204
    assert deliver(client, signer, late, first).status_code == 204

    assert stops.asked == [("telnyx_default", ACCOUNT_SID, late["CallSid"], late["RecordingSid"])]
    assert any(
        "superseded" in r.getMessage() and late["RecordingSid"] in r.getMessage() for r in caplog.records
    )
    assert API_KEY not in caplog.text


def test_nothing_is_stopped_without_a_settlement_or_for_another_call(client, signer, stops, caplog):
    token, other_call_token = new_token(), new_token()
    assert deliver(client, signer, callback("in-progress"), token).status_code == 204  # never settled
    settle(client, "v3:the-start-s-call", "kept-sid", [other_call_token])
    assert deliver(client, signer, callback("in-progress"), other_call_token).status_code == 204
    assert stops.asked == []
    assert any("not on its call" in r.getMessage() for r in caplog.records)


def test_a_failed_stop_asks_telnyx_to_send_again_and_the_next_delivery_stops_it(client, signer, stops, store):
    token = new_token()
    late = callback("in-progress")
    settle(client, late["CallSid"], "kept-sid", [token])
    stops.fail = 1

    refused = deliver(client, signer, late, token)
    again = deliver(client, signer, late, token, timestamp=int(time.time()) - 1)  # signed anew: no replay

    assert (refused.status_code, again.status_code) == (503, 204)
    assert [asked[3] for asked in stops.asked] == [late["RecordingSid"]] * 2
    assert len(store.list_prefix("start_tokens", token)) == 1  # the sighting was kept the first time


def test_a_superseded_recording_that_ran_to_its_end_is_reported(client, signer, stops, caplog):
    token = new_token()
    final = callback("completed")
    settle(client, final["CallSid"], "kept-sid", [token])
    caplog.set_level(logging.WARNING, logger="telnyx_provider")

    assert deliver(client, signer, final, token).status_code == 204

    assert stops.asked == []
    assert any("ran until it ended" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"key": "another key"}, id="mac-under-another-key"),
        pytest.param({"mac": ""}, id="no-mac"),
        pytest.param({"mac": "0" * 64}, id="made-up-mac"),
        pytest.param({"params": {"conn_id": "no_such_connection"}}, id="unknown-connection"),
        pytest.param({"params": {"conn_id": "bad id with spaces"}}, id="malformed-connection-id"),
    ],
)
def test_a_settlement_without_the_connections_key_is_refused_and_nothing_is_kept(client, store, change):
    reply = settle(client, "v3:call", "kept-sid", [new_token()], **change)
    assert reply.status_code == 401
    assert store.list_prefix(NAMESPACE, "") == []


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"not json", id="not-json"),
        pytest.param(b"[]", id="not-an-object"),
        pytest.param(settlement_body("v3:call", "kept", []), id="no-token"),
        pytest.param(settlement_body("v3:call", "kept", ["not-a-token"]), id="malformed-token"),
        pytest.param(settlement_body("v3:call", "kept", [new_token() for _ in range(65)]), id="65-tokens"),
        pytest.param(settlement_body("v3:call", "a/b?c", [new_token()]), id="malformed-recording-sid"),
    ],
)
def test_a_malformed_settlement_is_refused_and_nothing_is_kept(client, store, body):
    reply = client.post(
        "/starts/settled", content=body, headers={SETTLEMENT_MAC_HEADER: settlement_mac(API_KEY, body)}
    )
    assert reply.status_code == 400
    assert store.list_prefix(NAMESPACE, "") == []


def test_a_settlement_larger_than_a_callback_is_refused_before_it_is_read(client, store):
    tokens = [new_token() for _ in range(300)]
    assert settle(client, "v3:call", "kept", tokens).status_code == 413


def test_the_connections_api_key_is_read_for_settlements_but_never_shown(client):
    key = load_connection_key("telnyx_default")
    assert key.api_key == API_KEY
    assert API_KEY not in repr(key)
    assert CallbackKey("c", b"k", "a").api_key is None


def test_a_genuine_callback_replayed_with_another_starts_token_is_refused(client, signer, store):
    # The URL's query (start_token) is not signed: a delivered callback sent again with another token is
    # the only way to pair a genuine callback with a foreign token, and the replay check refuses it.
    ours, theirs = new_token(), new_token()
    fields = callback("in-progress")
    body = urlencode(fields).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded", **signer.headers(body)}

    first = client.post("/recording-status", content=body, headers=headers, params={"start_token": theirs})
    replayed = client.post("/recording-status", content=body, headers=headers, params={"start_token": ours})

    assert (first.status_code, replayed.status_code) == (204, 401)
    assert client.get(f"/starts/{ours}").json()["sightings"] == []
    assert len(client.get(f"/starts/{theirs}").json()["sightings"]) == 1
