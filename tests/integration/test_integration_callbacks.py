"""The callback receiver behind a real uvicorn, fed by the sandbox's own signed callbacks and real replays."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import TYPE_CHECKING

import pytest
import requests
import uvicorn

from telnyx_provider.plugins.callbacks import ReceiverSettings, create_app
from telnyx_provider.sandbox import Sandbox
from tests.conftest import ACCOUNT_SID
from tests.plugins.conftest import recordings_asset_in_db  # noqa: F401 - a fixture
from tests.plugins.test_callbacks import events_for

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def receiver_url(recordings_asset_in_db) -> Iterator[str]:  # noqa: F811 - the imported fixture
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(
        uvicorn.Config(create_app(ReceiverSettings()), log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/recording-status"
    server.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture
def signing_sandbox(monkeypatch) -> Iterator[Sandbox]:
    """A sandbox of the test account (whose recordings Asset a test DAG uses), its key in telnyx_default."""
    with Sandbox(port=0, processing_delay=0.2, account_sid=ACCOUNT_SID) as sb:
        monkeypatch.setenv("AIRFLOW_CONN_TELNYX_DEFAULT", sb.airflow_conn_json())
        yield sb


def record(sb: Sandbox, callback_url: str, method: str = "POST") -> str:
    call_sid = sb.create_call()
    reply = requests.post(
        f"{sb.base_url}/texml/Accounts/{sb.account_sid}/Calls/{call_sid}/Recordings.json",
        headers={"Authorization": f"Bearer {sb.api_key}"},
        data={
            "RecordingStatusCallback": callback_url,
            "RecordingStatusCallbackMethod": method,
            "RecordingStatusCallbackEvent": "in-progress completed absent",
        },
        timeout=5,
    )
    reply.raise_for_status()
    sb.hangup(call_sid)
    return str(reply.json()["sid"])


def wait_for(condition, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)
    return value


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_signed_callbacks_become_one_event_and_a_replay_is_refused(signing_sandbox, receiver_url, method):
    sid = record(signing_sandbox, receiver_url, method)
    (event,) = wait_for(lambda: events_for(sid))
    assert event["RecordingSid"] == sid
    assert event["RecordingStatus"] == "completed"
    assert event["AccountSid"] == ACCOUNT_SID
    stats = wait_for(lambda: (s := signing_sandbox.stats())["callbacks_sent"] >= 2 and s)  # in-progress too
    assert stats["callbacks_failed"] == 0
    assert signing_sandbox.replay_callback(sid) == 401  # the same bytes, signature and timestamp again
    assert len(events_for(sid)) == 1


def test_callbacks_signed_by_another_account_key_are_refused(signing_sandbox, receiver_url, monkeypatch):
    with Sandbox(port=0, processing_delay=0.2, account_sid=ACCOUNT_SID) as impostor:
        sid = record(impostor, receiver_url)  # telnyx_default holds the other sandbox's key
        wait_for(lambda: impostor.stats()["callbacks_failed"] >= 1)
        assert impostor.stats()["callbacks_sent"] == 0
    assert events_for(sid) == []
