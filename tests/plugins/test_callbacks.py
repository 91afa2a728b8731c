"""The signed status-callback receiver: every refusal, and verified callbacks becoming asset events."""

from __future__ import annotations

import json
import logging
import uuid
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient

from telnyx_provider.plugins.callbacks import ReceiverSettings, create_app
from tests.conftest import ACCOUNT_SID
from tests.signing import Signer

URL = "/recording-status"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
MEDIA_URL = "https://media.telnyx.test/recording.wav?X-Amz-Signature=capability-must-not-be-logged"


def callback(status: str = "completed", *, account_sid: str = ACCOUNT_SID, **extra: str) -> dict[str, str]:
    fields = {
        "AccountSid": account_sid,
        "CallSid": "v3:" + uuid.uuid4().hex,
        "RecordingSid": str(uuid.uuid4()),
        "RecordingStatus": status,
        "RecordingChannels": "2",
        "RecordingSource": "StartCallRecordingAPI",
        "RecordingStartTime": "Tue, 01 Dec 2026 03:00:00 +0000",
    }
    if status in ("completed", "absent"):
        fields["RecordingDuration"] = "12"
    fields.update(extra)
    return fields


def events_for(recording_sid: str) -> list[dict[str, object]]:
    """Extras of the stored events of the test Asset that name ``recording_sid``."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from telnyx_provider.assets import recordings_asset_uri

    with create_session() as session:
        rows = session.scalars(
            select(AssetEvent)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetModel.uri == recordings_asset_uri(ACCOUNT_SID))
        ).all()
        return [dict(row.extra) for row in rows if row.extra.get("RecordingSid") == recording_sid]


@pytest.fixture
def client(recordings_asset_in_db, signer):
    with TestClient(create_app(ReceiverSettings(tolerance=300))) as client:
        yield client


def post(client, signer: Signer, body: bytes, *, headers=None, timestamp=None, params=None, signed_by=None):
    sent = {**FORM, **(signed_by or signer).headers(body, timestamp), **(headers or {})}
    return client.post(URL, content=body, headers=sent, params=params)


def test_a_completed_callback_becomes_an_asset_event_and_queues_the_consumer(client, signer):
    from airflow.models.asset import AssetDagRunQueue
    from airflow.utils.session import create_session
    from sqlalchemy import select

    fields = callback(RecordingUrl=MEDIA_URL)
    reply = post(client, signer, urlencode(fields).encode())
    assert reply.status_code == 204, reply.text
    assert reply.content == b""
    assert events_for(fields["RecordingSid"]) == [fields]
    with create_session() as session:
        queued = session.scalars(select(AssetDagRunQueue.target_dag_id)).all()
    assert "telnyx_test_recordings_consumer" in queued


def test_an_absent_callback_becomes_an_event_too(client, signer):
    fields = callback("absent")
    assert post(client, signer, urlencode(fields).encode()).status_code == 204
    assert [event["RecordingStatus"] for event in events_for(fields["RecordingSid"])] == ["absent"]


def test_an_in_progress_callback_is_accepted_without_an_event(client, signer):
    fields = callback("in-progress")
    assert post(client, signer, urlencode(fields).encode()).status_code == 204
    assert events_for(fields["RecordingSid"]) == []


def test_a_get_callback_is_verified_over_the_raw_query_string(client, signer):
    fields = callback()
    query = urlencode({"conn_id": "telnyx_default", **fields})
    reply = client.get(f"{URL}?{query}", headers=signer.headers(query.encode()))
    assert reply.status_code == 204, reply.text
    assert events_for(fields["RecordingSid"]) == [fields]  # conn_id is ours, not a callback field


def test_a_get_callback_with_one_changed_byte_is_refused(client, signer):
    fields = callback()
    query = urlencode(fields)
    headers = signer.headers(query.encode())
    tampered = query.replace("RecordingStatus=completed", "RecordingStatus=completeD")
    assert client.get(f"{URL}?{tampered}", headers=headers).status_code == 401
    assert events_for(fields["RecordingSid"]) == []


def _refused_401(reply) -> None:
    assert reply.status_code == 401, reply.text
    assert reply.json() == {"detail": "The request's Telnyx signature could not be verified."}


def test_an_unsigned_callback_is_refused(client, signer):
    fields = callback()
    reply = client.post(URL, content=urlencode(fields).encode(), headers=FORM)
    _refused_401(reply)
    assert events_for(fields["RecordingSid"]) == []


def test_a_callback_signed_with_another_key_is_refused(client, signer):
    fields = callback()
    _refused_401(post(client, signer, urlencode(fields).encode(), signed_by=Signer()))
    assert events_for(fields["RecordingSid"]) == []


@pytest.mark.parametrize("position", [0, 40, -1])
def test_a_callback_with_one_changed_byte_is_refused(client, signer, position):
    fields = callback()
    body = bytearray(urlencode(fields).encode())
    headers = {**FORM, **signer.headers(bytes(body))}
    body[position] ^= 0x01
    _refused_401(client.post(URL, content=bytes(body), headers=headers))
    assert events_for(fields["RecordingSid"]) == []


@pytest.mark.parametrize("age", [301, -301, 3600])
def test_a_stale_callback_is_refused(client, signer, age):
    import time

    fields = callback()
    reply = post(client, signer, urlencode(fields).encode(), timestamp=int(time.time()) - age)
    _refused_401(reply)
    assert events_for(fields["RecordingSid"]) == []


def test_the_tolerance_comes_from_the_settings(recordings_asset_in_db, signer):
    import time

    fields = callback()
    body = urlencode(fields).encode()
    with TestClient(create_app(ReceiverSettings(tolerance=30))) as strict:
        _refused_401(post(strict, signer, body, timestamp=int(time.time()) - 60))
    with TestClient(create_app(ReceiverSettings(tolerance=120))) as lenient:
        assert post(lenient, signer, body, timestamp=int(time.time()) - 60).status_code == 204


def test_a_replayed_callback_is_refused_and_stored_once(client, signer):
    fields = callback()
    body = urlencode(fields).encode()
    headers = {**FORM, **signer.headers(body)}
    assert client.post(URL, content=body, headers=headers).status_code == 204
    _refused_401(client.post(URL, content=body, headers=headers))
    assert len(events_for(fields["RecordingSid"])) == 1


def test_the_same_callback_signed_anew_is_not_a_replay(client, signer):
    # A retry signed anew is a new request; deduplicating by RecordingSid is the consumer's job.
    import time

    fields = callback()
    body = urlencode(fields).encode()
    assert post(client, signer, body, timestamp=int(time.time()) - 1).status_code == 204
    assert post(client, signer, body).status_code == 204
    assert len(events_for(fields["RecordingSid"])) == 2


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"\xff\xfe=\x00", id="not-utf8"),
        pytest.param(b"AccountSid", id="no-equals"),
        pytest.param(b"", id="empty"),
        pytest.param(
            urlencode({"AccountSid": ACCOUNT_SID, "RecordingStatus": "completed"}).encode(), id="no-sid"
        ),
        pytest.param(b"AccountSid=a&AccountSid=b&RecordingSid=r&RecordingStatus=completed", id="repeated"),
        pytest.param(b"AccountSid=a%2Fb&RecordingSid=r&RecordingStatus=completed", id="slash-in-account"),
    ],
)
def test_a_signed_but_malformed_body_is_a_400(client, signer, body):
    reply = post(client, signer, body)
    assert reply.status_code == 400, reply.text
    assert reply.json()["detail"]


def test_a_body_over_the_limit_is_a_413(client, signer):
    fields = callback(Padding="x" * 9000)
    reply = post(client, signer, urlencode(fields).encode())
    assert reply.status_code == 413
    assert events_for(fields["RecordingSid"]) == []


def test_a_query_string_over_the_limit_is_a_414(client, signer):
    query = urlencode(callback(Padding="x" * 9000))
    assert client.get(f"{URL}?{query}", headers=signer.headers(query.encode())).status_code == 414


@pytest.mark.parametrize(
    "content_type", ["application/json", "text/plain", "multipart/form-data; boundary=x", None]
)
def test_a_post_that_is_not_a_form_is_a_415(client, signer, content_type):
    fields = callback()
    body = json.dumps(fields).encode() if content_type == "application/json" else urlencode(fields).encode()
    headers = signer.headers(body)
    if content_type:
        headers["Content-Type"] = content_type
    reply = client.post(URL, content=body, headers=headers)
    assert reply.status_code == 415
    assert events_for(fields["RecordingSid"]) == []


def test_a_form_content_type_with_a_charset_is_accepted(client, signer):
    fields = callback()
    body = urlencode(fields).encode()
    headers = {**signer.headers(body), "Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    assert client.post(URL, content=body, headers=headers).status_code == 204


def test_an_unknown_conn_id_gets_the_same_401_as_a_bad_signature(client, signer, caplog):
    fields = callback()
    with caplog.at_level(logging.WARNING, logger="telnyx_provider.plugins.callbacks"):
        reply = post(client, signer, urlencode(fields).encode(), params={"conn_id": "no_such_connection"})
    _refused_401(reply)
    assert "no connection 'no_such_connection'" in caplog.text
    assert events_for(fields["RecordingSid"]) == []


def test_a_connection_without_public_key_is_refused_and_says_so_in_the_log(
    client, signer, monkeypatch, caplog
):
    monkeypatch.setenv("AIRFLOW_CONN_TELNYX_NOKEY", json.dumps({"conn_type": "telnyx", "password": "KEY"}))
    monkeypatch.setenv(
        "AIRFLOW_CONN_TELNYX_BADKEY", json.dumps({"conn_type": "telnyx", "extra": {"public_key": "bad key"}})
    )
    fields = callback()
    body = urlencode(fields).encode()
    with caplog.at_level(logging.WARNING, logger="telnyx_provider.plugins.callbacks"):
        _refused_401(post(client, signer, body, params={"conn_id": "telnyx_nokey"}))
        _refused_401(post(client, signer, body, params={"conn_id": "telnyx_badkey"}))
    assert "connection 'telnyx_nokey' has no 'public_key' in its extra" in caplog.text
    assert (
        "connection 'telnyx_badkey': 'public_key' in its extra: the public key is not valid base64"
        in caplog.text
    )


def test_an_asset_no_dag_uses_is_a_404_that_says_so(client, signer, monkeypatch):
    other_account = str(uuid.uuid4())
    conn = {"conn_type": "telnyx", "login": other_account, "extra": {"public_key": signer.public_key}}
    monkeypatch.setenv("AIRFLOW_CONN_TELNYX_OTHER", json.dumps(conn))
    fields = callback(account_sid=other_account)
    body = urlencode(fields).encode()
    headers = {**FORM, **signer.headers(body)}
    params = {"conn_id": "telnyx_other"}
    reply = client.post(URL, content=body, headers=headers, params=params)
    assert reply.status_code == 404
    assert f"No DAG uses the Asset telnyx://{other_account}/recordings" in reply.json()["detail"]
    # Nothing was stored, so the same delivery may come again (once a DAG uses the Asset): not a replay.
    assert client.post(URL, content=body, headers=headers, params=params).status_code == 404


def test_the_recording_url_is_stored_but_never_logged(client, signer, caplog):
    fields = callback(RecordingUrl=MEDIA_URL)
    body = urlencode(fields).encode()
    with caplog.at_level(logging.DEBUG):
        assert post(client, signer, body).status_code == 204
        _refused_401(post(client, signer, body, signed_by=Signer()))  # a refusal logs too
    assert events_for(fields["RecordingSid"])[0]["RecordingUrl"] == MEDIA_URL
    assert fields["RecordingSid"] in caplog.text  # the log does say what happened
    assert "capability-must-not-be-logged" not in caplog.text


def test_airflow_finds_the_receiver_among_its_fastapi_plugins():
    from airflow import plugins_manager

    from telnyx_provider.get_provider_info import get_provider_info

    (plugin,) = [p for p in get_provider_info()["plugins"] if p["name"] == "telnyx_callbacks"]
    assert plugin["plugin-class"] == "telnyx_provider.plugins.callbacks.TelnyxCallbacksPlugin"
    if hasattr(plugins_manager, "get_fastapi_plugins"):  # Airflow 3.2+
        apps, _ = plugins_manager.get_fastapi_plugins()
    else:  # Airflow 3.1: module-level lists filled by initialize_fastapi_plugins()
        plugins_manager.initialize_fastapi_plugins()
        apps = plugins_manager.fastapi_apps or []
    (mounted,) = [app for app in apps if app["url_prefix"] == "/telnyx"]
    assert [route.path for route in mounted["app"].routes] == [
        "/recording-status",
        "/starts/settled",
        "/starts/{token}",
    ]
