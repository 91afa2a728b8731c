"""The environment's proxy settings are honoured; ~/.netrc never replaces the bearer key (sync and async)."""

from __future__ import annotations

import json

import pytest

from telnyx_provider.hooks.recording import RecordingHook
from telnyx_provider.hooks.recording_async import AsyncRecordingClient, environment_proxy
from telnyx_provider.triggers.recording import RecordingCompletedTrigger
from tests.conftest import ACCOUNT_SID, SECRET_KEY
from tests.hooks.test_recording_hook import DOCS_REPLY, RECORDING_SID
from tests.scripted_api import Reply

PATH = f"/texml/Accounts/{ACCOUNT_SID}/Recordings/{RECORDING_SID}.json"
FAR_AWAY = "http://telnyx.invalid/v2"  # resolvable only through the proxy


@pytest.fixture
def through_proxy(scripted_api, monkeypatch):
    """The scripted server acts as the HTTP proxy; the connection names a host only the proxy can reach."""
    for name in (
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "NO_PROXY",
        "no_proxy",
        "ALL_PROXY",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", scripted_api.base_url.removesuffix("/v2"))
    conn = {"conn_type": "telnyx", "host": FAR_AWAY, "login": ACCOUNT_SID, "password": SECRET_KEY}
    monkeypatch.setenv("AIRFLOW_CONN_TELNYX_DEFAULT", json.dumps(conn))
    scripted_api.script("GET", PATH, Reply(200, {**DOCS_REPLY, "status": "completed"}))
    return scripted_api


def test_environment_proxy_follows_no_proxy(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example")
    assert environment_proxy("https://api.telnyx.com/v2") == "http://proxy.example:3128"
    assert environment_proxy("https://internal.example/v2") is None


def test_sync_hook_goes_through_the_proxy(through_proxy):
    assert RecordingHook().get_recording(RECORDING_SID)["status"] == "completed"
    assert through_proxy.count("GET", PATH) == 1


async def test_trigger_goes_through_the_proxy(through_proxy):
    events = [e.payload async for e in RecordingCompletedTrigger(RECORDING_SID, poll_interval=0.01).run()]
    assert [e["status"] for e in events] == ["success"]
    assert through_proxy.count("GET", PATH) == 1


@pytest.fixture
def netrc_for_loopback(tmp_path, monkeypatch):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password not-the-api-key\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))


def test_netrc_does_not_replace_the_bearer_key_sync(sandbox, netrc_for_loopback):
    call_sid = sandbox.create_call()
    started = RecordingHook().start_call_recording(call_sid)
    assert RecordingHook().get_recording(started["sid"])["status"] == "in-progress"


async def test_netrc_does_not_replace_the_bearer_key_async(scripted_api, netrc_for_loopback):
    scripted_api.script("GET", PATH, Reply(200, {**DOCS_REPLY, "status": "completed"}))
    from telnyx_provider.connection import TelnyxConnectionConfig

    config = TelnyxConnectionConfig(
        conn_id="t", base_url=scripted_api.base_url, api_key=SECRET_KEY, account_sid=ACCOUNT_SID
    )
    client = AsyncRecordingClient(config)
    try:
        assert (await client.get_recording(RECORDING_SID))["status"] == "completed"
    finally:
        await client.aclose()
    assert scripted_api.seen[-1].headers["Authorization"] == f"Bearer {SECRET_KEY}"
