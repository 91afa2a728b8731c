"""The receiver's side of exact starts: verified callbacks carrying a start token become sightings, and
``GET /starts/{token}`` tells them (and only for a well-formed token, and never a media link)."""

from __future__ import annotations

import logging
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient

from telnyx_provider.exact_start import new_token
from telnyx_provider.plugins.callbacks import ReceiverSettings, create_app
from telnyx_provider.plugins.start_tokens import NAMESPACE
from tests.plugins.test_callbacks import MEDIA_URL, callback, post
from tests.receiver_app import sqlite_store


@pytest.fixture
def store(tmp_path):
    return sqlite_store(str(tmp_path / "receiver.db"))


@pytest.fixture
def client(signer, store):
    settings = ReceiverSettings(tolerance=300, store=store, store_event=lambda *_: 1)
    with TestClient(create_app(settings)) as client:
        yield client


def test_a_verified_in_progress_callback_with_a_token_is_kept_and_told_to_its_start(client, signer, caplog):
    token = new_token()
    fields = callback("in-progress", RecordingUrl=MEDIA_URL)
    caplog.set_level(logging.INFO, logger="telnyx_provider")

    reply = post(client, signer, urlencode(fields).encode(), params={"start_token": token})

    assert reply.status_code == 204, reply.text
    told = client.get(f"/starts/{token}")
    assert told.status_code == 200
    assert told.headers["cache-control"] == "no-store"
    [sighting] = told.json()["sightings"]
    assert sighting["recording_sid"] == fields["RecordingSid"]
    assert sighting["call_sid"] == fields["CallSid"]
    assert sighting["status"] == "in-progress"
    assert MEDIA_URL not in told.text  # no media link in the answer
    assert all(MEDIA_URL not in record.getMessage() for record in caplog.records)


def test_a_final_callback_repeating_the_token_adds_its_status_once(client, signer, store):
    token = new_token()
    fields = callback("in-progress")
    post(client, signer, urlencode(fields).encode(), params={"start_token": token})
    final = {**fields, "RecordingStatus": "completed", "RecordingDuration": "3"}
    post(client, signer, urlencode(final).encode(), params={"start_token": token})
    post(client, signer, urlencode(final).encode(), params={"start_token": token})  # a second delivery

    statuses = [s["status"] for s in client.get(f"/starts/{token}").json()["sightings"]]
    assert statuses == ["in-progress", "completed"]
    assert len(store.list_prefix(NAMESPACE, token)) == 2


def test_an_unverified_callback_with_a_token_is_never_kept(client, signer, store):
    from tests.signing import Signer

    token = new_token()
    body = urlencode(callback("in-progress")).encode()
    reply = post(client, signer, body, params={"start_token": token}, signed_by=Signer())  # another key
    assert reply.status_code == 401
    assert client.get(f"/starts/{token}").json()["sightings"] == []
    assert store.list_prefix(NAMESPACE, "") == []


def test_other_tokens_see_nothing_and_a_malformed_token_is_not_found(client, signer):
    token = new_token()
    post(client, signer, urlencode(callback("in-progress")).encode(), params={"start_token": token})
    assert client.get(f"/starts/{new_token()}").json()["sightings"] == []
    assert client.get(f"/starts/{token[:-1]}").status_code == 404
    assert client.get(f"/starts/{token[:-1]}!").status_code == 404


def test_a_sighting_that_cannot_be_stored_asks_telnyx_to_send_again(signer, store, monkeypatch):
    def down(*args, **kwargs):
        raise RuntimeError("database is down")

    monkeypatch.setattr("telnyx_provider.plugins.start_tokens.record_sighting", down)
    settings = ReceiverSettings(tolerance=300, store=store, store_event=lambda *_: 1)
    with TestClient(create_app(settings)) as client:
        body = urlencode(callback("in-progress")).encode()
        reply = post(client, signer, body, params={"start_token": new_token()})
        assert reply.status_code == 503
        # Refused without being claimed as seen: the same signed request is not taken for a replay.
        reply = post(client, signer, body, params={"start_token": new_token()})
        assert reply.status_code == 503


def test_a_get_callback_carries_its_token_in_the_signed_query_and_keeps_it_out_of_the_fields(client, signer):
    token = new_token()
    fields = callback("in-progress")
    query = urlencode({"start_token": token, **fields})
    reply = client.get(f"/recording-status?{query}", headers=signer.headers(query.encode()))
    assert reply.status_code == 204, reply.text
    [sighting] = client.get(f"/starts/{token}").json()["sightings"]
    assert sighting["recording_sid"] == fields["RecordingSid"]
    assert token not in str(sighting)
