"""Where the API key may go, over real HTTP: the sandbox hands out media links and redirects aimed at a
collector (another origin on loopback) that records whether it ever received an ``Authorization`` header.

Three worlds:
- direct: the API is the sandbox at ``http://127.0.0.1:PORT``; the collector listens on another port, on
  127.0.0.2 with the sandbox's own port, or on ``[::1]``;
- named: the API is ``http://api.telnyx.test`` reached through the collector as an HTTP proxy (which relays
  that one name to the sandbox and answers every other name itself), so look-alike names are real hosts;
- TLS: the API is ``https://127.0.0.1:PORT`` and the same port also answers plain http (a downgrade).

Every case asserts that no request the collector answered carried the key; the backslash cases got the key
to the collector before the fix.
"""

from __future__ import annotations

import json
import ssl
from urllib.parse import quote

import pytest

from telnyx_provider.errors import TelnyxApiError
from telnyx_provider.hooks.recording import RecordingHook
from telnyx_provider.retry import RetryPolicy
from telnyx_provider.sandbox import Sandbox
from tests.collector import AUDIO, Collector
from tests.conftest import ACCOUNT_SID
from tests.sandbox.conftest import wait_for

NO_RETRY = RetryPolicy(max_retries=0, max_wait=0.01, budget=10, initial_wait=0.01)
PROXY_VARIABLES = (
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
)
API_NAME = "api.telnyx.test"


@pytest.fixture
def no_proxy_environment(monkeypatch):
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def sandbox(no_proxy_environment, monkeypatch):
    with Sandbox(port=0, recording_seconds=0.2, processing_delay=0.05, seed=5) as sb:
        monkeypatch.setenv("AIRFLOW_CONN_TELNYX_DEFAULT", sb.airflow_conn_json())
        yield sb


@pytest.fixture
def collector(sandbox):
    with Collector() as other:
        yield other


def completed(sandbox: Sandbox) -> str:
    """A completed recording's SID (started and read through the sandbox's own connection)."""
    hook = RecordingHook(retry_policy=NO_RETRY)
    sid = hook.start_call_recording(sandbox.create_call(), play_beep=False)["sid"]
    wait_for(lambda: hook.get_recording(sid)["status"] == "completed", timeout=10)
    hook.close()
    return sid


def download(sid: str, tmp_path) -> dict:
    hook = RecordingHook(retry_policy=NO_RETRY)
    try:
        return hook.download_recording(sid, f"{tmp_path}/")
    finally:
        hook.close()


def attempt(sid: str, tmp_path) -> str | None:
    """Download; ``None`` when stored, else the failure kind."""
    try:
        download(sid, tmp_path)
    except TelnyxApiError as error:
        return error.failure or f"HTTP {error.status}"
    return None


def refused(sid: str, tmp_path) -> TelnyxApiError:
    with pytest.raises(TelnyxApiError) as caught:
        download(sid, tmp_path)
    assert caught.value.failure == "refused", caught.value
    assert list(tmp_path.iterdir()) == []
    return caught.value


def with_auth(sandbox: Sandbox) -> tuple[int, int]:
    stats = sandbox.stats()
    return stats["media_requests"], stats["media_requests_with_auth"]


# -- media links in the direct world -------------------------------------------------------------------


@pytest.mark.parametrize(
    "link",
    [
        "http://127.0.0.1:{cp}\\@127.0.0.1:{sp}{path}",  # the review's: urllib3 connects to the collector
        "http://127.0.0.1:{cp}\\\\@127.0.0.1:{sp}{path}",
        "http://127.0.0.1:{cp}/\\@127.0.0.1:{sp}{path}",
        "http://127.0.0.1:{sp}@127.0.0.1:{cp}{path}",  # a user part naming the API
        "http://user:pass@127.0.0.1:{sp}{path}",  # a user part at all, even towards the API
        "http://127.0.0.1:{cp}%5C@127.0.0.1:{sp}{path}",  # a percent-encoded backslash: a user part
        "http://127.0.0.1:{cp}%40127.0.0.1:{sp}{path}",  # a percent-encoded @ in the host
        "http://127.0.0.1:{cp}\t@127.0.0.1:{sp}{path}",
        "http://127.0.0.1:{sp}\n{path}",
        "http://127.0.0.1:{cp} {path}",
        "ftp://127.0.0.1:{sp}{path}",
        "http://127.0.0.1:{sp}:{cp}{path}",
    ],
    ids=[
        "backslash",
        "two-backslashes",
        "slash-backslash",
        "user-part-naming-the-api",
        "user-and-password",
        "encoded-backslash",
        "encoded-at",
        "tab",
        "newline",
        "space",
        "ftp",
        "two-ports",
    ],
)
def test_a_media_link_read_two_ways_is_refused_before_any_request(sandbox, collector, tmp_path, link):
    sid = completed(sandbox)
    sandbox.configure_media(link=link.replace("{cp}", str(collector.port)).replace("{sp}", str(sandbox.port)))

    outcome = attempt(sid, tmp_path)

    assert collector.keys_received() == []
    assert collector.seen == []
    assert outcome == "refused"
    assert with_auth(sandbox) == (0, 0)
    error = refused(sid, tmp_path)
    assert sandbox.api_key not in str(error)
    assert str(collector.port) not in str(error)  # the link is never quoted


@pytest.mark.parametrize(
    "link",
    [
        "http://127.0.0.1:{cp}#@127.0.0.1:{sp}{path}",
        "http://127.0.0.1:{cp}?@127.0.0.1:{sp}{path}",
        "http://127.0.0.1:{cp}/@127.0.0.1:{sp}{path}",
        "http://127.0.0.1:{cp}{path}",  # another port
        "HTTP://127.0.0.1:{cp}{path}",
        "http://127.0.0.1:{cp}/media/x.wav?Signature=presigned",  # a pre-signed link on a storage host
    ],
    ids=["fragment", "query", "path-at", "other-port", "uppercase-scheme", "presigned"],
)
def test_a_foreign_media_link_is_fetched_without_the_key(sandbox, collector, tmp_path, link):
    sid = completed(sandbox)
    sandbox.configure_media(link=link.replace("{cp}", str(collector.port)).replace("{sp}", str(sandbox.port)))

    stored = download(sid, tmp_path)

    assert stored["size"] == len(AUDIO)  # the collector's audio: the request did reach it
    assert [seen.authorization for seen in collector.seen] == [None]
    assert with_auth(sandbox) == (0, 0)


def test_another_loopback_address_on_the_apis_own_port_gets_no_key(sandbox, tmp_path):
    sid = completed(sandbox)
    try:
        other = Collector(host="127.0.0.2", port=sandbox.port)
    except OSError as error:  # pragma: no cover - a machine without 127.0.0.2
        pytest.skip(f"cannot bind 127.0.0.2:{sandbox.port}: {error}")
    with other:
        sandbox.configure_media(link=f"http://127.0.0.2:{sandbox.port}{{path}}")
        download(sid, tmp_path)
        assert [seen.authorization for seen in other.seen] == [None]


def test_an_ipv6_literal_on_the_apis_own_port_gets_no_key(sandbox, tmp_path):
    sid = completed(sandbox)
    try:
        other = Collector(host="::1", port=sandbox.port)
    except OSError as error:  # pragma: no cover - a machine without IPv6 loopback
        pytest.skip(f"cannot bind [::1]:{sandbox.port}: {error}")
    with other:
        sandbox.configure_media(link=f"http://[::1]:{sandbox.port}{{path}}")
        download(sid, tmp_path)
        assert [seen.authorization for seen in other.seen] == [None]


@pytest.mark.parametrize(
    ("host", "sends_key"),
    [("127.0.0.1", True), ("localhost", False), ("2130706433", False), ("[::ffff:127.0.0.1]", False)],
    ids=["own-origin", "another-name-same-address", "decimal-address", "ipv4-mapped"],
)
def test_only_the_apis_own_origin_spelled_as_configured_gets_the_key(sandbox, tmp_path, host, sends_key):
    sid = completed(sandbox)
    sandbox.configure_media(link=f"http://{host}:{sandbox.port}{{path}}")

    # A name or address this machine does not route fails to connect: no request at all.
    assert attempt(sid, tmp_path) in (None, "connect", "connection")
    assert with_auth(sandbox)[1] == (1 if sends_key else 0)


# -- redirects --------------------------------------------------------------------------------------------


def own_link(sandbox: Sandbox, sid: str) -> str:
    hook = RecordingHook(retry_policy=NO_RETRY)
    try:
        return str(hook.get_recording(sid)["media_url"])
    finally:
        hook.close()


def bounce(collector: Collector, target: str) -> str:
    """A collector URL that redirects to ``target``."""
    return f"{collector.origin}/redirect?to={quote(target, safe='')}"


def test_three_hops_on_the_apis_origin_then_off_it_the_key_stops_at_the_last_own_hop(
    sandbox, collector, tmp_path
):
    sid = completed(sandbox)
    path = own_link(sandbox, sid).removeprefix(sandbox.origin)
    sandbox.inject_media("redirect", count=2, location=path)  # relative: the same link again
    sandbox.inject_media("redirect", count=1, location=f"{collector.origin}/x.wav")

    stored = download(sid, tmp_path)

    assert stored["size"] == len(AUDIO)
    assert with_auth(sandbox) == (3, 3)  # three hops on the API's own origin, each with the key
    assert [seen.authorization for seen in collector.seen] == [None]


def test_a_chain_that_leaves_the_origin_never_carries_the_key_again_even_back_home(
    sandbox, collector, tmp_path
):
    sid = completed(sandbox)
    link = own_link(sandbox, sid)
    # own (key) -> collector -> collector -> own again: the last hop gets no key, though it is the API's.
    sandbox.inject_media("redirect", location=bounce(collector, bounce(collector, link)))

    stored = download(sid, tmp_path)

    assert stored["size"] > len(AUDIO)  # the sandbox's audio (5 s cap), fetched on the way back
    assert with_auth(sandbox) == (2, 1)
    assert [seen.authorization for seen in collector.seen] == [None, None]


def test_a_scheme_relative_redirect_off_the_origin_gets_no_key(sandbox, collector, tmp_path):
    sid = completed(sandbox)
    sandbox.inject_media("redirect", location=f"//127.0.0.1:{collector.port}/x.wav")

    download(sid, tmp_path)

    assert with_auth(sandbox) == (1, 1)
    assert [seen.authorization for seen in collector.seen] == [None]


def test_more_redirects_than_the_limit_fail_without_writing(sandbox, collector, tmp_path):
    sid = completed(sandbox)
    target = f"{collector.origin}/x.wav"
    for _ in range(6):
        target = bounce(collector, target)
    sandbox.inject_media("redirect", location=target)

    with pytest.raises(TelnyxApiError, match="more than 5 redirects"):
        download(sid, tmp_path)

    assert collector.keys_received() == []
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "location",
    [
        "http://127.0.0.1:{cp}\\@127.0.0.1:{sp}/x.wav",
        "/\\127.0.0.1:{cp}/x.wav",
        "http://127.0.0.1:{sp}@127.0.0.1:{cp}/x.wav",
        "http://127.0.0.1:{cp}%5C@127.0.0.1:{sp}/x.wav",
        "http://127.0.0.1:{cp}\t/x.wav",
        "http://127.0.0.1:{cp}/x.wav\t",
        "javascript:alert(1)",
        "file:///etc/passwd",
    ],
    ids=[
        "backslash",
        "slash-backslash",
        "user-part",
        "encoded-backslash",
        "tab",
        "trailing-tab",
        "js",
        "file",
    ],
)
def test_a_redirect_read_two_ways_is_refused(sandbox, collector, tmp_path, location):
    sid = completed(sandbox)
    sandbox.inject_media(
        "redirect", location=location.replace("{cp}", str(collector.port)).replace("{sp}", str(sandbox.port))
    )

    outcome = attempt(sid, tmp_path)

    assert collector.keys_received() == []
    assert collector.seen == []
    assert outcome == "refused"
    assert with_auth(sandbox) == (1, 1)  # only the first hop, on the API's origin
    assert list(tmp_path.iterdir()) == []


def test_a_redirect_folded_over_two_header_lines_is_refused(sandbox, collector, tmp_path):
    """An obsolete line folding puts a CR LF and a tab inside the Location's value."""
    sid = completed(sandbox)
    sandbox.inject_media(
        "redirect", location=f"http://127.0.0.1:{sandbox.port}/\r\n\t@127.0.0.1:{collector.port}/"
    )

    refused(sid, tmp_path)

    assert collector.seen == []


# -- look-alike names, through the collector as a proxy ----------------------------------------------------


@pytest.fixture
def named(sandbox, monkeypatch):
    """The API is ``http://api.telnyx.test`` (port 80), reached through the collector as an HTTP proxy."""
    with Collector(forward={f"{API_NAME}:80": ("127.0.0.1", sandbox.port)}) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.origin)
        conn = json.loads(sandbox.airflow_conn_json())
        conn["host"] = f"http://{API_NAME}/v2"
        monkeypatch.setenv("AIRFLOW_CONN_TELNYX_DEFAULT", json.dumps(conn))
        yield proxy


@pytest.mark.parametrize(
    ("host", "sends_key"),
    [
        (API_NAME, True),
        (API_NAME.upper(), True),  # host names are case-insensitive
        ("Api.Telnyx.Test:80", True),
        (f"{API_NAME}.", False),  # the trailing-dot spelling is another origin here
        (f"{API_NAME}.evil", False),
        (f"{API_NAME}.evil.example", False),
        (f"evil-{API_NAME}", False),
        (f"evil.{API_NAME}", False),
        ("api-telnyx.test", False),
        ("apitelnyx.test", False),
        (f"{API_NAME}:8080", False),
        ("xn--pi-6kc.telnyx.test", False),  # the IDN look-alike, as the resolver would see it
    ],
)
def test_look_alike_names_get_no_key(sandbox, named, tmp_path, host, sends_key):
    sid = completed(sandbox)
    sandbox.configure_media(link=f"http://{host}{{path}}")

    download(sid, tmp_path)

    assert named.keys_received() == []
    media = [seen for seen in named.seen if "/media/" in seen.path]
    assert len(media) == 1
    assert media[0].relayed is sends_key
    assert (media[0].authorization is not None) is sends_key


def test_an_idn_look_alike_is_refused(sandbox, named, tmp_path):
    sid = completed(sandbox)
    sandbox.configure_media(link="http://\u0430pi.telnyx.test{path}")  # a Cyrillic "a"

    refused(sid, tmp_path)

    assert [seen for seen in named.seen if "/media/" in seen.path] == []


# -- an https API, and the same host and port over plain http ----------------------------------------------


@pytest.fixture
def tls_collector(tmp_path, no_proxy_environment, monkeypatch):
    from tests.reliability.test_reliability_secrets import _certificates

    ca, cert, key = _certificates(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with Collector(tls=context) as api:
        conn = {
            "conn_type": "telnyx",
            "host": f"https://127.0.0.1:{api.port}/v2",
            "login": ACCOUNT_SID,
            "password": "KEYdowngrade",
            "extra": json.dumps({"ca_bundle": str(ca)}),
        }
        monkeypatch.setenv("AIRFLOW_CONN_TELNYX_DEFAULT", json.dumps(conn))
        api.recording_path = f"/v2/texml/Accounts/{ACCOUNT_SID}/Recordings/rec-1.json"
        yield api


@pytest.mark.parametrize(("scheme", "sends_key"), [("https", True), ("http", False)])
def test_an_http_downgrade_of_the_apis_origin_gets_no_key(tls_collector, tmp_path, scheme, sends_key):
    api = tls_collector
    api.recording = {"sid": "rec-1", "status": "completed", "duration": "1", "call_sid": "c"}
    api.recording["media_url"] = f"{scheme}://127.0.0.1:{api.port}/media/rec-1.wav"
    out = tmp_path / "out"

    RecordingHook(retry_policy=NO_RETRY).download_recording("rec-1", f"{out}/")

    (media,) = [seen for seen in api.seen if seen.path.startswith("/media/")]
    assert media.tls is (scheme == "https")
    assert (media.authorization == "Bearer KEYdowngrade") is sends_key
    assert [seen for seen in api.seen if not seen.tls and seen.authorization] == []
