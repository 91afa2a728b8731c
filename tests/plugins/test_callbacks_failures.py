"""The receiver when what follows its checks fails: the event store, a step. Telnyx must be told to deliver
again (503), and the log must never carry the callback's media link (a database error quotes the
statement's parameters, the event's extra among them)."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from telnyx_provider.plugins.callbacks import ReceiverSettings, create_app
from tests.plugins.test_callbacks import FORM, MEDIA_URL, URL, callback, events_for

if TYPE_CHECKING:
    from collections.abc import Iterator

TOLERANCE = 300
REFUSE_ASSET_EVENTS = (
    "CREATE TRIGGER review_refuse_asset_events BEFORE INSERT ON asset_event "
    "BEGIN SELECT RAISE(ABORT, 'database is failing'); END"
)


# --- the event store failing after the claim -------------------------------------------------------------
@contextmanager
def refusing_asset_events() -> Iterator[None]:
    """Airflow's ``asset_event`` table refuses every insert (the metadata database failing mid-request),
    through a SQLite trigger: the real ``register_asset_change`` fails as it would."""
    from airflow import settings

    settings.engine.dispose()  # no pooled connection keeps a schema from before (or after) the trigger
    with settings.engine.begin() as conn:
        conn.execute(text(REFUSE_ASSET_EVENTS))
    try:
        yield
    finally:
        with settings.engine.begin() as conn:
            conn.execute(text("DROP TRIGGER IF EXISTS review_refuse_asset_events"))
        settings.engine.dispose()


@pytest.fixture
def failing_asset_events(recordings_asset_in_db) -> Iterator[None]:
    with refusing_asset_events():
        yield


def _logged(caplog) -> str:
    return "\n".join(
        [record.getMessage() for record in caplog.records]
        + [str(record.exc_info[1]) for record in caplog.records if record.exc_info]
    )


def _post_uncaught(client: TestClient, body: bytes, headers: dict[str, str]):
    try:
        return client.post(URL, content=body, headers=headers)
    except Exception as escaped:  # what escapes the app, uvicorn logs with its message and traceback
        leaks = "X-Amz-Signature" in str(escaped)
        pytest.fail(
            f"{type(escaped).__name__} escaped the receiver (a 500); its message quotes the link: {leaks}"
        )


def test_an_event_that_cannot_be_stored_is_a_503_that_never_logs_the_media_link(
    failing_asset_events, signer, caplog
):
    fields = callback(RecordingUrl=MEDIA_URL)
    body = urlencode(fields).encode()
    headers = {**FORM, **signer.headers(body)}
    with (
        caplog.at_level(logging.DEBUG),
        TestClient(create_app(ReceiverSettings(tolerance=TOLERANCE))) as client,
    ):
        reply = _post_uncaught(client, body, headers)
    assert reply.status_code == 503, reply.text  # Telnyx delivers it again later
    assert "again later" in reply.json()["detail"]
    assert "X-Amz-Signature" not in reply.text
    logged = _logged(caplog)
    assert "X-Amz-Signature" not in logged, "the media link reached the API server's log"
    assert f"recording {fields['RecordingSid']}" in logged
    assert "IntegrityError" in logged  # what failed, without the message that quotes the parameters
    assert events_for(fields["RecordingSid"]) == []


def test_the_same_delivery_is_accepted_once_the_database_is_back(recordings_asset_in_db, signer, caplog):
    """The claim is released when the event could not be stored: the same bytes (a retry signed with the
    same timestamp) are accepted once the database works again."""
    fields = callback(RecordingUrl=MEDIA_URL)
    body = urlencode(fields).encode()
    headers = {**FORM, **signer.headers(body)}
    with TestClient(create_app(ReceiverSettings(tolerance=TOLERANCE))) as client:
        with refusing_asset_events():
            assert _post_uncaught(client, body, headers).status_code == 503
        assert client.post(URL, content=body, headers=headers).status_code == 204
        assert client.post(URL, content=body, headers=headers).status_code == 401  # and then it is a replay
    assert len(events_for(fields["RecordingSid"])) == 1


def test_a_failing_step_is_a_503_that_never_logs_the_media_link(recordings_asset_in_db, signer, caplog):
    def step(callback) -> None:
        raise RuntimeError(f"the step failed on {callback.fields}")

    fields = callback(RecordingUrl=MEDIA_URL)
    body = urlencode(fields).encode()
    headers = {**FORM, **signer.headers(body)}
    app = create_app(ReceiverSettings(tolerance=TOLERANCE, on_verified=[step]))
    with caplog.at_level(logging.DEBUG), TestClient(app) as client:
        reply = _post_uncaught(client, body, headers)
    assert reply.status_code == 503, reply.text
    assert "X-Amz-Signature" not in _logged(caplog)
    assert events_for(fields["RecordingSid"]) == []
