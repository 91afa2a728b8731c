"""Where the key may go, with what the environment adds (review r-media): ``~/.netrc`` credentials for the
media host, an HTTP proxy, and redirects of the API's own non-GET requests. Over real HTTP, against a
collector on 127.0.0.1 that records every ``Authorization`` header it receives."""

from __future__ import annotations

import json

import pytest

from telnyx_provider.errors import TelnyxApiError
from telnyx_provider.hooks.recording import RecordingHook
from telnyx_provider.sandbox import Sandbox
from tests.collector import AUDIO, Collector
from tests.conftest import ACCOUNT_SID, SECRET_KEY
from tests.integration.test_integration_media_key import (
    PROXY_VARIABLES,
    completed,
    download,
    own_link,
    with_auth,
)
from tests.scripted_api import Reply

RECORDING_SID = "b08f0fa1-a32c-4218-b3b5-9cf78941ccac"
CALL_SID = "v3-call-1"


@pytest.fixture
def sandbox(monkeypatch):
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with Sandbox(port=0, recording_seconds=0.2, processing_delay=0.05, seed=7) as sb:
        monkeypatch.setenv("AIRFLOW_CONN_TELNYX_DEFAULT", sb.airflow_conn_json())
        yield sb


@pytest.fixture
def netrc_for_loopback(tmp_path, monkeypatch):
    """~/.netrc credentials for 127.0.0.1: the API's host and the collector's (netrc ignores ports)."""
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password netrc-secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))


def test_netrc_credentials_never_go_with_media_to_another_origin_nor_replace_the_key_at_home(
    sandbox, netrc_for_loopback, tmp_path
):
    sid = completed(sandbox)
    with Collector() as other:
        sandbox.inject_media("redirect", location=f"{other.origin}/x.wav")  # own origin (key) -> collector

        stored = download(sid, tmp_path)

        assert stored["size"] == len(AUDIO)
        assert [seen.authorization for seen in other.seen] == [None]  # no Basic from ~/.netrc either
    assert with_auth(sandbox) == (1, 1)  # the first hop carried the key, not the netrc login


def test_through_an_http_proxy_a_foreign_media_host_gets_no_key(sandbox, tmp_path, monkeypatch):
    """The collector as the environment's HTTP proxy: it sees every request; the media request to a host
    it answers itself must carry no key, the API's requests (relayed to the sandbox) do."""
    sid = completed(sandbox)
    with Collector() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.origin)
        monkeypatch.setenv("NO_PROXY", "")
        proxy.forward[f"127.0.0.1:{sandbox.port}"] = ("127.0.0.1", sandbox.port)
        sandbox.configure_media(link="http://media.storage.test/recordings/x.wav?X-Amz-Signature=abc")

        stored = download(sid, tmp_path)

        assert stored["size"] == len(AUDIO)
        assert proxy.keys_received() == []
        answered = proxy.answered()
        assert [(seen.target, seen.authorization) for seen in answered] == [("media.storage.test:80", None)]
        assert any(seen.relayed and seen.authorization for seen in proxy.seen)  # the API calls, with the key


def test_no_proxy_sends_the_api_origin_direct_and_the_key_with_it(sandbox, tmp_path, monkeypatch):
    sid = completed(sandbox)
    link = own_link(sandbox, sid)
    with Collector() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.origin)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        sandbox.configure_media(link=link)

        download(sid, tmp_path)

        assert proxy.seen == []
    assert with_auth(sandbox) == (1, 1)


@pytest.mark.parametrize("status", [307, 308, 302])
@pytest.mark.parametrize("method", ["DELETE", "POST"])
def test_a_redirect_of_the_apis_own_request_is_not_followed(scripted_api, monkeypatch, status, method):
    """requests would follow a 307/308 of a DELETE or POST with its body and (same host) its key; the API
    client follows none: the redirect is an error naming its status, and the collector sees nothing."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    if method == "DELETE":
        path = f"/texml/Accounts/{ACCOUNT_SID}/Recordings/{RECORDING_SID}.json"
    else:
        path = f"/texml/Accounts/{ACCOUNT_SID}/Calls/{CALL_SID}/Recordings/{RECORDING_SID}.json"
    with Collector() as other:
        location = f"{other.origin}/v2{path}"
        scripted_api.script(method, path, Reply(status, b"", {"Location": location}))
        hook = RecordingHook(max_retries=0)
        if method == "DELETE":
            send = lambda: hook.delete_recording(RECORDING_SID)  # noqa: E731
        else:
            send = lambda: hook.stop_call_recording(CALL_SID, RECORDING_SID)  # noqa: E731

        with pytest.raises(TelnyxApiError) as caught:
            send()

        assert caught.value.status == status
        assert other.seen == []
        assert SECRET_KEY not in str(caught.value) + repr(caught.value.__dict__)
        assert json.dumps(caught.value.headers).find(other.origin) == -1  # not even the Location is kept
