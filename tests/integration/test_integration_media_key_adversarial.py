"""Adversarial attempts to get the API key to a collector on another loopback origin, each kept as a test.

Every attempt starts from the API's own origin (the sandbox's media route, whose first hop legitimately
carries the key) and redirects with a crafted ``Location``, or hands out a crafted ``media_url``. Whatever
the outcome (stored, refused, failed to connect), the collector must never see ``Authorization``.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest

from telnyx_provider.errors import TelnyxApiError
from telnyx_provider.sandbox import Sandbox
from tests.collector import Collector
from tests.integration.test_integration_media_key import (
    PROXY_VARIABLES,
    attempt,
    completed,
    download,
    own_link,
    with_auth,
)


@pytest.fixture
def sandbox(monkeypatch):
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with Sandbox(port=0, recording_seconds=0.2, processing_delay=0.05, seed=6) as sb:
        monkeypatch.setenv("AIRFLOW_CONN_TELNYX_DEFAULT", sb.airflow_conn_json())
        yield sb


@pytest.fixture
def collector(sandbox):
    with Collector() as other:
        yield other


LOCATIONS = {
    "other-port": "http://127.0.0.1:{cp}",
    "scheme-relative": "//127.0.0.1:{cp}/x.wav",
    "api-host-as-user-part": "http://127.0.0.1:{sp}@127.0.0.1:{cp}/",
    "encoded-backslash": "http://127.0.0.1:{cp}%5C@127.0.0.1:{sp}/",
    "encoded-backslash-lower": "http://127.0.0.1:{cp}%5c@127.0.0.1:{sp}/",
    "raw-backslash": "http://127.0.0.1:{cp}\\@127.0.0.1:{sp}/",
    "slash-backslash-relative": "/\\127.0.0.1:{cp}/x.wav",
    "backslash-scheme-relative": "\\\\127.0.0.1:{cp}/x.wav",
    "tab-in-host": "http://127.0.0.1:{cp}\t@127.0.0.1:{sp}/",
    "leading-tab": "\thttp://127.0.0.1:{cp}/x.wav",
    "newline-in-location": "http://127.0.0.1:{sp}/\r\n\t@127.0.0.1:{cp}/",
    "second-location-header": "http://127.0.0.1:{sp}/media/x\r\nLocation: http://127.0.0.1:{cp}/x.wav",
    "uppercase-scheme": "HTTP://127.0.0.1:{cp}/x.wav",
    "scheme-without-slashes": "http:127.0.0.1:{cp}/x.wav",
    "single-slash": "http:/127.0.0.1:{cp}/x.wav",
    "ipv4-mapped": "http://[::ffff:127.0.0.1]:{cp}/x.wav",
    "decimal-address": "http://2130706433:{cp}/x.wav",
    "short-address": "http://127.1:{cp}/x.wav",
    "hex-address": "http://0x7f.0.0.1:{cp}/x.wav",
    "trailing-dot-address": "http://127.0.0.1.:{cp}/x.wav",
    "leading-zero-port": "http://127.0.0.1:0{cp}/x.wav",
    "fullwidth-at": "http://127.0.0.1:{cp}\uff20127.0.0.1:{sp}/",
    "nul": "http://127.0.0.1:{cp}\x00@127.0.0.1:{sp}/",
    "fragment-at": "http://127.0.0.1:{cp}#@127.0.0.1:{sp}/",
    "query-at": "http://127.0.0.1:{cp}?@127.0.0.1:{sp}/",
    "https-to-plain-collector": "https://127.0.0.1:{cp}/x.wav",
}


def attempt_with_message(sid: str, tmp_path) -> tuple[str | None, str]:
    try:
        download(sid, tmp_path)
    except TelnyxApiError as error:
        return error.failure or f"HTTP {error.status}", str(error) + repr(error.__dict__)
    return None, ""


def fill(template: str, collector: Collector, sandbox) -> str:
    return template.replace("{cp}", str(collector.port)).replace("{sp}", str(sandbox.port))


@pytest.mark.parametrize("name", sorted(LOCATIONS))
def test_a_crafted_redirect_from_the_apis_origin_never_brings_the_key_to_the_collector(
    sandbox, collector, tmp_path, name
):
    sid = completed(sandbox)
    sandbox.inject_media("redirect", location=fill(LOCATIONS[name], collector, sandbox))

    outcome, message = attempt_with_message(sid, tmp_path)

    assert collector.keys_received() == [], outcome
    assert "x.wav" not in message  # an error may name a hop's host, never its link
    if outcome == "refused":
        assert f":{collector.port}" not in message  # nor what it refused
    # The first hop, on the API's origin, carried the key; no hop after it that reached the sandbox did,
    # unless the target was the API's own origin spelled exactly (then the key stays at home).
    requests_seen, with_key = with_auth(sandbox)
    assert with_key >= 1
    if with_key > 1:
        assert name in ("scheme-without-slashes", "single-slash", "leading-zero-port"), (
            requests_seen,
            with_key,
        )


@pytest.mark.parametrize("name", sorted(LOCATIONS))
def test_a_crafted_media_link_never_brings_the_key_to_the_collector(sandbox, collector, tmp_path, name):
    sid = completed(sandbox)
    link = fill(LOCATIONS[name], collector, sandbox)
    if link.startswith(("/", "\\", "\t")):  # relative forms only make sense as a redirect
        link = f"http://127.0.0.1:{sandbox.port}{link.lstrip()}"
    sandbox.configure_media(link=link)

    outcome = attempt(sid, tmp_path)

    assert collector.keys_received() == [], outcome


def test_an_open_redirect_on_the_apis_own_origin_still_stops_the_key_at_the_origin(
    sandbox, collector, tmp_path
):
    """own -> own (an open redirect there) -> collector -> collector: the key goes no further than home."""
    sid = completed(sandbox)
    away = f"{collector.origin}/redirect?to={quote(collector.origin + '/x.wav', safe='')}"
    link = own_link(sandbox, sid)
    sandbox.inject_media("redirect", location=link.removeprefix(sandbox.origin))  # hop 2, on the API's origin
    sandbox.inject_media("redirect", location=away)

    assert attempt(sid, tmp_path) is None  # stored: the collector's audio

    assert with_auth(sandbox) == (2, 2)
    assert [seen.authorization for seen in collector.seen] == [None, None]
