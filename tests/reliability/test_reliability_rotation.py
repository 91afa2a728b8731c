"""The triggerer's shared async client follows what the connection says, not its id (issue 15 point 9): new
waits use the connection as it is when they start, the waits already holding the old client may finish on
it, and a 401 makes a wait read the connection again (over real HTTP to loopback servers)."""

from __future__ import annotations

import asyncio
import json

import pytest
from airflow.sdk import BaseHook

from telnyx_provider.hooks import shared_clients
from telnyx_provider.hooks.recording import RecordingHook
from telnyx_provider.hooks.recording_async import shared_client
from telnyx_provider.sandbox import Sandbox
from telnyx_provider.triggers.recording import RecordingCompletedTrigger
from tests.conftest import ACCOUNT_SID
from tests.hooks.test_recording_hook import DOCS_REPLY, RECORDING_SID

OLD_KEY = "KEYold_rotated_away_0123456789"
NEW_KEY = "KEYnew_after_rotation_9876543210"
GET_ONE = "GET /Recordings/{sid}"


@pytest.fixture
def connection(monkeypatch, reply_server):
    """``set(key)``: point ``telnyx_default`` at the loopback server with that API key."""
    reply_server.reply(200, {**DOCS_REPLY, "status": "completed", "duration": "5"})

    def set_key(key: str) -> None:
        conn = {"conn_type": "telnyx", "host": reply_server.url, "login": ACCOUNT_SID, "password": key}
        monkeypatch.setenv("AIRFLOW_CONN_TELNYX_DEFAULT", json.dumps(conn))

    return set_key


def point_at(monkeypatch, sandbox: Sandbox) -> None:
    """``telnyx_default`` on ``sandbox``, with the key it accepts now."""
    fields = {"host": sandbox.base_url, "login": sandbox.account_sid, "password": sandbox.api_key}
    conn = {"conn_type": "telnyx", **fields}
    monkeypatch.setenv("AIRFLOW_CONN_TELNYX_DEFAULT", json.dumps(conn))


@pytest.fixture
def two_hosts():
    """Two sandboxes serving one account with one key: the connection's host can move between them."""
    key = "KEYvalid_on_both_hosts_0123456789"
    with (
        Sandbox(port=0, processing_delay=0.1, api_key=key, account_sid=ACCOUNT_SID) as host_a,
        Sandbox(port=0, processing_delay=0.1, api_key=key, account_sid=ACCOUNT_SID) as host_b,
    ):
        yield host_a, host_b


def last_key(reply_server) -> str:
    return reply_server.seen[-1][2]["Authorization"].removeprefix("Bearer ")


async def first_event(trigger: RecordingCompletedTrigger) -> dict:
    return (await asyncio.wait_for(trigger.run().__anext__(), 30)).payload


async def test_a_rotated_key_reaches_new_waits_while_old_ones_finish(connection, reply_server):
    connection(OLD_KEY)
    async with shared_client("telnyx_default") as held:  # a wait in progress holds the client
        await held.get_recording(RECORDING_SID)
        assert last_key(reply_server) == OLD_KEY
        connection(NEW_KEY)  # the key is rotated in the connection

        event = await first_event(RecordingCompletedTrigger(RECORDING_SID, poll_interval=0.01))
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


async def test_a_wait_starting_right_after_a_change_uses_it(connection):
    connection(OLD_KEY)
    async with shared_client("telnyx_default") as first:
        connection(NEW_KEY)  # no delay: there is no re-check interval during which the old key is reused
        async with shared_client("telnyx_default") as second:
            assert second is not first
            assert second.config.api_key == NEW_KEY
    assert shared_clients._SHARED == {}


async def test_waits_starting_together_read_the_connection_at_most_twice(connection, monkeypatch):
    connection(OLD_KEY)
    reads = []
    original = BaseHook.aget_connection

    async def counting(conn_id):
        reads.append(conn_id)
        await asyncio.sleep(0.05)  # a lookup takes time: the others arrive while it is under way
        return await original(conn_id)

    monkeypatch.setattr(BaseHook, "aget_connection", counting)

    async def borrow():
        async with shared_client("telnyx_default") as client:
            await asyncio.sleep(0.1)
            return client

    clients = await asyncio.gather(*(borrow() for _ in range(500)))
    assert len({id(client) for client in clients}) == 1
    assert 1 <= len(reads) <= 2  # one read under way when they arrive, one queued behind it for the rest
    assert shared_clients._SHARED == {}
    assert shared_clients._READS == {}


async def test_a_wait_deferred_after_the_host_moved_polls_the_new_host(two_hosts, monkeypatch):
    host_a, host_b = two_hosts
    point_at(monkeypatch, host_a)
    async with shared_client("telnyx_default") as held:  # a wait in progress holds the client on host A
        point_at(monkeypatch, host_b)
        call_sid = host_b.create_call()
        sid = RecordingHook().start_call_recording(call_sid)["sid"]
        host_b.hangup(call_sid)
        event = await first_event(RecordingCompletedTrigger(sid, poll_interval=0.05))
        assert event["status"] == "success", event
        assert held.config.base_url == host_a.base_url  # the waits already running keep theirs
    assert host_b.stats()["gets_per_recording"][sid] >= 1
    assert GET_ONE not in host_a.stats()["requests_by_route"]


async def test_a_401_makes_a_running_wait_read_the_connection_again(sandbox, monkeypatch):
    call_sid = sandbox.create_call()
    sid = RecordingHook().start_call_recording(call_sid)["sid"]
    point_at(monkeypatch, sandbox)
    wait = asyncio.ensure_future(first_event(RecordingCompletedTrigger(sid, poll_interval=0.05)))
    while not sandbox.stats()["gets_per_recording"].get(sid):  # it polls with the first key
        await asyncio.sleep(0.02)
    sandbox.rotate_api_key()  # the old key is revoked...
    point_at(monkeypatch, sandbox)  # ...and the connection gets the new one
    sandbox.hangup(call_sid)
    event = await wait
    assert event["status"] == "success", event


async def test_a_401_with_an_unchanged_connection_is_one_error_event(sandbox, monkeypatch):
    sid = RecordingHook().start_call_recording(sandbox.create_call())["sid"]
    point_at(monkeypatch, sandbox)
    sandbox.rotate_api_key()  # revoked, and the connection still holds the old key
    event = await first_event(RecordingCompletedTrigger(sid, poll_interval=0.05))
    assert event["status"] == "error"
    assert "401" in event["message"]
    assert sandbox.stats()["requests_by_route"][GET_ONE] == 1  # read again, unchanged: no second look
