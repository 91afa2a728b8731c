"""What the receiver authenticates: the account a key vouches for, the connection's type, cheap checks before
any lookup, answers that do not tell which connections exist, replays refused by every worker."""

from __future__ import annotations

import base64
import json
import logging
import os
import time
import uuid
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine

from telnyx_provider.plugins.callbacks import ReceiverSettings, Refusal, VerifiedCallback, create_app
from telnyx_provider.plugins.receiver_store import ReceiverStore
from tests.conftest import ACCOUNT_SID
from tests.plugins.counting_secrets import CountingSecretsBackend
from tests.plugins.test_callbacks import FORM, URL, callback, events_for, post
from tests.signing import Signer

OTHER_ACCOUNT = "0b7f4a55-6a6b-4c8d-9e0f-112233445566"


def _refused_401(reply) -> None:
    assert reply.status_code == 401, reply.text
    assert reply.json() == {"detail": "The request's Telnyx signature could not be verified."}


def add_connection(monkeypatch, conn_id: str, **fields: object) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))


def airflow_store() -> ReceiverStore:
    """A store on Airflow's metadata database with an engine of its own: what another worker has."""
    from airflow import settings

    return ReceiverStore(create_engine(settings.engine.url))


@pytest.fixture
def client(recordings_asset_in_db, signer):
    with TestClient(create_app(ReceiverSettings())) as client:
        yield client


@pytest.fixture
def counted_lookups(monkeypatch):
    """The connection ids Airflow's secrets backends are asked for from now on."""
    monkeypatch.setenv(
        "AIRFLOW__SECRETS__BACKEND", f"{CountingSecretsBackend.__module__}.{CountingSecretsBackend.__name__}"
    )
    CountingSecretsBackend.lookups.clear()
    from airflow.models.connection import Connection

    Connection.get_connection_from_secrets("telnyx_default")
    assert CountingSecretsBackend.lookups == ["telnyx_default"], "the counting backend is not consulted"
    CountingSecretsBackend.lookups.clear()
    return CountingSecretsBackend.lookups


# --- point 5: one account's key vouches for that account only, and only a telnyx connection's ----------
def test_a_callback_of_another_account_signed_with_this_connection_s_key_is_refused(client, signer):
    fields = callback(account_sid=OTHER_ACCOUNT)
    _refused_401(post(client, signer, urlencode(fields).encode()))
    assert events_for(fields["RecordingSid"]) == []


def test_a_key_vouches_only_for_its_own_connection_s_login(client, signer, monkeypatch, caplog):
    # Another account's connection, whose key the attacker holds, names it in conn_id: its key verifies,
    # but the callback claims the victim's account.
    other = Signer()
    add_connection(
        monkeypatch,
        "telnyx_other",
        conn_type="telnyx",
        login=OTHER_ACCOUNT,
        password="KEY",
        extra={"public_key": other.public_key},
    )
    forged = callback()  # AccountSid: the test account, whose Asset a DAG uses
    body = urlencode(forged).encode()
    with caplog.at_level(logging.WARNING, logger="telnyx_provider.plugins.callbacks"):
        _refused_401(post(client, signer, body, signed_by=other, params={"conn_id": "telnyx_other"}))
    assert "AccountSid is not the login of connection 'telnyx_other'" in caplog.text
    assert events_for(forged["RecordingSid"]) == []
    # Its own account's callback passes every check (then 404: no DAG uses that account's Asset).
    own = callback(account_sid=OTHER_ACCOUNT)
    reply = post(client, signer, urlencode(own).encode(), signed_by=other, params={"conn_id": "telnyx_other"})
    assert reply.status_code == 404, reply.text


@pytest.mark.parametrize("conn_type", ["http", "generic", "postgres"])
def test_only_a_telnyx_connection_s_key_verifies_callbacks(client, signer, monkeypatch, caplog, conn_type):
    add_connection(
        monkeypatch,
        "not_telnyx",
        conn_type=conn_type,
        login=ACCOUNT_SID,
        extra={"public_key": signer.public_key},
    )
    fields = callback()
    with caplog.at_level(logging.WARNING, logger="telnyx_provider.plugins.callbacks"):
        _refused_401(post(client, signer, urlencode(fields).encode(), params={"conn_id": "not_telnyx"}))
    assert f"connection 'not_telnyx' is of type {conn_type!r}, not 'telnyx'" in caplog.text
    assert events_for(fields["RecordingSid"]) == []


def test_a_connection_without_login_verifies_nothing(client, signer, monkeypatch, caplog):
    add_connection(monkeypatch, "no_login", conn_type="telnyx", extra={"public_key": signer.public_key})
    fields = callback()
    with caplog.at_level(logging.WARNING, logger="telnyx_provider.plugins.callbacks"):
        _refused_401(post(client, signer, urlencode(fields).encode(), params={"conn_id": "no_login"}))
    assert "connection 'no_login' has no login" in caplog.text


# --- point 6: cheap checks first, failed lookups cached, nothing tells which ids exist -----------------
def junk_requests(signer: Signer) -> list[dict[str, object]]:
    """50 requests that fail a check needing no connection, each naming a connection id never seen."""
    body = urlencode(callback()).encode()
    now = int(time.time())
    good = signer.headers(body, now)
    sig64 = base64.b64encode(os.urandom(64)).decode()
    variants: list[dict[str, str]] = [
        {},  # unsigned
        {"telnyx-timestamp": str(now)},  # no signature
        {"telnyx-signature-ed25519": sig64},  # no timestamp
        {"telnyx-signature-ed25519": sig64, "telnyx-timestamp": "yesterday"},
        {"telnyx-signature-ed25519": sig64, "telnyx-timestamp": str(now - 301)},  # stale
        {"telnyx-signature-ed25519": sig64, "telnyx-timestamp": str(now + 3600)},  # from the future
        {"telnyx-signature-ed25519": "not base64!", "telnyx-timestamp": str(now)},
        {"telnyx-signature-ed25519": base64.b64encode(os.urandom(63)).decode(), "telnyx-timestamp": str(now)},
        {"telnyx-signature-ed25519": "A" * 5000, "telnyx-timestamp": str(now)},
        {**good, "telnyx-timestamp": "1" * 40},
    ]
    requests = []
    for index in range(50):
        headers = {**FORM, **variants[index % len(variants)]}
        requests.append(
            {"content": body, "headers": headers, "params": {"conn_id": f"junk_{uuid.uuid4().hex}"}}
        )
    return requests


def test_requests_failing_the_cheap_checks_cost_no_connection_lookup(client, signer, counted_lookups):
    for request in junk_requests(signer):
        _refused_401(client.post(URL, **request))
    # and a body over the limit, or a malformed connection id, with good headers
    big = urlencode(callback(Padding="x" * 9000)).encode()
    assert (
        client.post(
            URL, content=big, headers={**FORM, **signer.headers(big)}, params={"conn_id": "x"}
        ).status_code
        == 413
    )
    body = urlencode(callback()).encode()
    for conn_id in ("a" * 251, "bad id", "semi;colon", "ünïcödé\u200b"):
        _refused_401(post(client, signer, body, params={"conn_id": conn_id}))
    assert counted_lookups == []


def test_a_failed_lookup_is_cached(client, signer, counted_lookups):
    forged = Signer()
    for _ in range(20):  # well-formed, fresh, signed by someone: only the connection is unknown
        body = urlencode(callback()).encode()
        _refused_401(post(client, signer, body, signed_by=forged, params={"conn_id": "made_up"}))
    assert counted_lookups == ["made_up"]


def test_an_existing_connection_with_the_wrong_key_and_an_unknown_one_get_the_same_answer(
    client, signer, counted_lookups
):
    forged = Signer()
    body = urlencode(callback()).encode()
    replies = [
        post(client, signer, body, signed_by=forged, params={"conn_id": conn_id})
        for conn_id in ("telnyx_default", "no_such_connection", "telnyx_default", "no_such_connection")
    ]
    assert {reply.status_code for reply in replies} == {401}
    assert len({reply.content for reply in replies}) == 1
    assert len({tuple(sorted(reply.headers.items())) for reply in replies}) == 1
    # One lookup each (the second request of each is answered from the cache).
    assert sorted(counted_lookups) == ["no_such_connection", "telnyx_default"]


# --- issue 16: replays refused by every worker, and after a restart ------------------------------------
def test_a_replay_is_refused_by_another_app_instance_and_after_a_restart(recordings_asset_in_db, signer):
    fields = callback()
    body = urlencode(fields).encode()
    headers = {**FORM, **signer.headers(body)}
    with (
        TestClient(create_app(ReceiverSettings(store=airflow_store()))) as worker_a,
        TestClient(create_app(ReceiverSettings(store=airflow_store()))) as worker_b,
    ):
        assert worker_a.post(URL, content=body, headers=headers).status_code == 204
        _refused_401(worker_b.post(URL, content=body, headers=headers))
        _refused_401(worker_a.post(URL, content=body, headers=headers))
    with TestClient(create_app(ReceiverSettings(store=airflow_store()))) as restarted:
        _refused_401(restarted.post(URL, content=body, headers=headers))
    assert len(events_for(fields["RecordingSid"])) == 1


def test_an_unavailable_store_is_a_503_and_stores_nothing(recordings_asset_in_db, signer, tmp_path):
    broken = ReceiverStore(create_engine(f"sqlite:///{tmp_path / 'missing' / 'dir' / 'x.db'}"))
    fields = callback()
    with TestClient(create_app(ReceiverSettings(store=broken))) as client:
        reply = post(client, signer, urlencode(fields).encode())
    assert reply.status_code == 503
    assert events_for(fields["RecordingSid"]) == []


# --- the on-verified step (the extension point) ------------------------------------------------------
def test_on_verified_steps_see_the_checked_callback_and_may_refuse_it(recordings_asset_in_db, signer):
    seen: list[VerifiedCallback] = []
    refuse = [True]

    def step(verified: VerifiedCallback) -> None:
        seen.append(verified)
        if refuse[0]:
            raise Refusal(409, "Not yet.", "the step refused it")

    settings = ReceiverSettings(url_parameters=frozenset({"conn_id", "start_token"}), on_verified=[step])
    fields = callback()
    body = urlencode(fields).encode()
    headers = {**FORM, **signer.headers(body)}
    params = {"conn_id": "telnyx_default", "start_token": "tok-1"}
    with TestClient(create_app(settings)) as client:
        assert client.post(URL, content=body, headers=headers, params=params).status_code == 409
        assert events_for(fields["RecordingSid"]) == []
        refuse[0] = False  # refused, the delivery was forgotten: the same bytes are accepted later
        assert client.post(URL, content=body, headers=headers, params=params).status_code == 204
        _refused_401(client.post(URL, content=body, headers=headers, params=params))  # then a replay
    assert len(seen) == 2
    assert seen[0].conn_id == "telnyx_default"
    assert seen[0].account_sid == ACCOUNT_SID
    assert seen[0].fields == fields
    assert seen[0].url_parameters == params
    assert len(events_for(fields["RecordingSid"])) == 1


def test_url_parameters_of_a_get_callback_stay_out_of_the_event(recordings_asset_in_db, signer):
    settings = ReceiverSettings(url_parameters=frozenset({"conn_id", "start_token"}))
    fields = callback()
    query = urlencode({"conn_id": "telnyx_default", "start_token": "tok-2", **fields})
    with TestClient(create_app(settings)) as client:
        reply = client.get(f"{URL}?{query}", headers=signer.headers(query.encode()))
    assert reply.status_code == 204, reply.text
    assert events_for(fields["RecordingSid"]) == [fields]


def test_a_failing_secrets_backend_is_a_503_not_a_verdict(recordings_asset_in_db, signer):
    def unreachable(conn_id: str):
        raise ConnectionError("the secrets backend is unreachable")

    fields = callback()
    with TestClient(create_app(ReceiverSettings(connection_keys=unreachable))) as client:
        reply = post(client, signer, urlencode(fields).encode())
    assert reply.status_code == 503
    assert "again later" in reply.json()["detail"]
    assert events_for(fields["RecordingSid"]) == []
