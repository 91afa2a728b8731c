"""A media host that misbehaves byte for byte (review r-media), over real HTTP on loopback.

The API and the media host are one :class:`tests.raw_server.RawServer`; the hook runs unchanged. Each test is
a reproduction of an attack on a guarantee: the media link never shows in an exception (its whole chain) or a
log line, and a download is stored only when it is proven whole.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from telnyx_provider.errors import TelnyxApiError
from telnyx_provider.hooks.recording import RecordingHook
from telnyx_provider.retry import RetryPolicy
from tests.conftest import ACCOUNT_SID, SECRET_KEY
from tests.raw_server import RawServer

if TYPE_CHECKING:
    from collections.abc import Iterator

RECORDING_SID = "b08f0fa1-a32c-4218-b3b5-9cf78941ccac"
RECORDING_PATH = f"/texml/Accounts/{ACCOUNT_SID}/Recordings/{RECORDING_SID}.json"
MEDIA_PATH = "/media/x.wav"
SIGNATURE = "SIGSECRET0123456789abcdef"
NO_RETRY = RetryPolicy(max_retries=0, max_wait=0.01, budget=10, initial_wait=0.01)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[RawServer]:
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    with RawServer(recording_path=RECORDING_PATH) as raw:
        conn = {"conn_type": "telnyx", "host": raw.base_url, "login": ACCOUNT_SID, "password": SECRET_KEY}
        monkeypatch.setenv("AIRFLOW_CONN_TELNYX_DEFAULT", json.dumps(conn))
        yield raw


def hand_out(server: RawServer, media_url: str) -> None:
    """The recording the API answers: final, with this media link (``{origin}`` is the server's)."""
    server.recording = {
        "sid": RECORDING_SID,
        "account_sid": ACCOUNT_SID,
        "call_sid": "v3:call",
        "status": "completed",
        "duration": "2",
        "media_url": media_url.replace("{origin}", server.origin),
    }


def chain_text(error: BaseException) -> str:
    """Everything an exception carries, its cause and context too: messages, reprs, attributes, args."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts += [str(current), repr(current), repr(current.args), repr(vars(current))]
        parts.append(repr(getattr(current, "object", "")))  # a UnicodeDecodeError keeps its bytes
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


def download(tmp_path) -> dict:
    return RecordingHook(retry_policy=NO_RETRY).download_recording(RECORDING_SID, f"{tmp_path}/")


# -- the media link in exceptions and logs -----------------------------------------------------------------


def test_a_redirect_whose_location_is_not_utf8_leaves_no_link_in_the_exception_chain(server, tmp_path):
    """requests decodes a Location as UTF-8 (even with allow_redirects=False); the UnicodeDecodeError keeps
    the whole Location, a pre-signed link, in its ``object``: it must not ride along as ``__context__``."""
    hand_out(server, "{origin}" + MEDIA_PATH)
    location = f"http://127.0.0.1:1/x.wav?X-Amz-Signature={SIGNATURE}".encode() + b"\xe9"
    redirect = b"HTTP/1.1 302 Found\r\nContent-Length: 0\r\nLocation: " + location + b"\r\n\r\n"
    server.script(MEDIA_PATH, [redirect])

    with pytest.raises(TelnyxApiError) as caught:
        download(tmp_path)

    assert caught.value.failure == "refused"
    assert SIGNATURE not in chain_text(caught.value)
