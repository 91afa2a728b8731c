"""The triggerer's shared async client follows a changed connection: new waits use the new settings while
the waits already holding the old client finish on it (over real HTTP to a loopback server)."""

from __future__ import annotations

import json

import pytest

from telnyx_provider.hooks import shared_clients
from telnyx_provider.hooks.recording_async import shared_client
from telnyx_provider.triggers.recording import RecordingCompletedTrigger
from tests.conftest import ACCOUNT_SID
from tests.hooks.test_recording_hook import DOCS_REPLY, RECORDING_SID

OLD_KEY = "KEYold_rotated_away_0123456789"
NEW_KEY = "KEYnew_after_rotation_9876543210"


@pytest.fixture
def connection(monkeypatch, reply_server):
    """``set(key)``: point ``telnyx_default`` at the loopback server with that API key."""
    reply_server.reply(200, {**DOCS_REPLY, "status": "completed", "duration": "5"})
    monkeypatch.setattr(shared_clients, "CONNECTION_RECHECK_SECONDS", 0.0)  # re-read on every new wait

    def set_key(key: str) -> None:
        conn = {"conn_type": "telnyx", "host": reply_server.url, "login": ACCOUNT_SID, "password": key}
        monkeypatch.setenv("AIRFLOW_CONN_TELNYX_DEFAULT", json.dumps(conn))

    return set_key


def last_key(reply_server) -> str:
    return reply_server.seen[-1][2]["Authorization"].removeprefix("Bearer ")


async def test_a_rotated_key_reaches_new_waits_while_old_ones_finish(connection, reply_server):
    connection(OLD_KEY)
    async with shared_client("telnyx_default") as held:  # a wait in progress holds the client
        await held.get_recording(RECORDING_SID)
        assert last_key(reply_server) == OLD_KEY
        connection(NEW_KEY)  # the key is rotated in the connection

        event = (await RecordingCompletedTrigger(RECORDING_SID, poll_interval=0.01).run().__anext__()).payload
        assert event["status"] == "success"
        assert last_key(reply_server) == NEW_KEY  # a new wait reads the connection again

        await held.get_recording(RECORDING_SID)
        assert last_key(reply_server) == OLD_KEY  # the old wait finishes on its own client
        assert not held._client.is_closed
    assert held._client.is_closed  # closed when its last user left
    assert shared_clients._SHARED == {}


async def test_an_unchanged_connection_keeps_one_shared_client(connection):
    connection(OLD_KEY)
    async with shared_client("telnyx_default") as first, shared_client("telnyx_default") as second:
        assert second is first
    assert first._client.is_closed
    assert shared_clients._SHARED == {}


async def test_new_waits_within_the_recheck_interval_share_the_client(connection, monkeypatch):
    monkeypatch.setattr(shared_clients, "CONNECTION_RECHECK_SECONDS", 3600.0)
    connection(OLD_KEY)
    async with shared_client("telnyx_default") as first:
        connection(NEW_KEY)
        async with shared_client("telnyx_default") as second:
            assert second is first  # the connection is not looked up for every one of a thousand waits
