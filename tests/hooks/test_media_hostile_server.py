"""A media host that misbehaves byte for byte (review r-media), over real HTTP on loopback.

The API and the media host are one :class:`tests.raw_server.RawServer`; the hook runs unchanged. Each test is
a reproduction of an attack on a guarantee: the media link never shows in an exception (its whole chain) or a
log line, and a download is stored only when it is proven whole.
"""

from __future__ import annotations

import gzip
import json
import logging
import threading
import zlib
from typing import TYPE_CHECKING

import pytest

from telnyx_provider.errors import RecordingIncompleteError, TelnyxApiError
from telnyx_provider.hooks.recording import RecordingHook
from telnyx_provider.retry import RetryPolicy
from telnyx_provider.sandbox.media import mp3_bytes, wav_bytes
from tests.collector import AUDIO
from tests.conftest import ACCOUNT_SID, SECRET_KEY
from tests.raw_server import RawServer, Trickle, http_reply

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


@pytest.mark.parametrize("odd", ["^", "|", "{", "`"], ids=["caret", "pipe", "brace", "backtick"])
def test_a_transport_error_quoting_the_link_as_requests_requoted_it_is_redacted(server, tmp_path, odd):
    """requests re-encodes some characters of a link (``^`` becomes ``%5E``); urllib3's error quotes the
    re-encoded target, which the link as handed out does not match."""
    # Nothing listens on port 1: the connection is refused.
    hand_out(server, f"http://127.0.0.1:1/x.wav?sig={SIGNATURE[:9]}{odd}{SIGNATURE[9:]}")

    with pytest.raises(TelnyxApiError) as caught:
        download(tmp_path)

    assert caught.value.failure in ("connect", "connection")
    text = chain_text(caught.value)
    assert SIGNATURE[:9] not in text
    assert SIGNATURE[9:] not in text


def test_an_error_body_echoing_the_links_query_in_percent_encoded_form_is_redacted(server, tmp_path):
    """S3's SignatureDoesNotMatch body echoes the canonical request: the query values as they were encoded in
    the link (``%2F``, ``%2B``), which their decoded form does not match."""
    token = "QUIETTOKEN%2Fabc%2Bdef%3Dxyz"
    query = f"X-Amz-Security-Token={token}&X-Amz-Signature={SIGNATURE}"
    hand_out(server, "{origin}" + MEDIA_PATH + "?" + query)
    body = f"<Error><Code>SignatureDoesNotMatch</Code><C>X-Amz-Security-Token={token}&amp;</C></Error>"
    body = body.encode()
    server.script(MEDIA_PATH, [http_reply(403, {"Content-Length": str(len(body))}, body)])

    with pytest.raises(TelnyxApiError) as caught:
        download(tmp_path)

    assert caught.value.status == 403
    assert "SignatureDoesNotMatch" in str(caught.value)  # the body is still quoted
    text = chain_text(caught.value)
    assert "QUIETTOKEN" not in text
    assert SIGNATURE not in text


def test_urllib3s_debug_line_with_the_link_is_masked(server, tmp_path, caplog, monkeypatch):
    """urllib3 logs each request's target, query included, at DEBUG: a task log at DEBUG would carry the
    pre-signed link. What the provider hands Airflow's masker must cover every such line."""
    from telnyx_provider.hooks import media

    masked: list[str] = []
    monkeypatch.setattr(media, "mask_secret", lambda value, name=None: masked.append(value))
    caplog.set_level(logging.DEBUG, logger="urllib3")
    hand_out(server, "{origin}" + MEDIA_PATH + f"?X-Amz-Expires=600&X-Amz-Signature={SIGNATURE}")
    server.script(MEDIA_PATH, [http_reply(200, {"Content-Length": str(len(AUDIO))}, AUDIO)])

    download(tmp_path)

    lines = [record.getMessage() for record in caplog.records if record.name.startswith("urllib3")]
    assert any(SIGNATURE in line for line in lines)  # the leak this guards against
    for line in lines:
        for value in masked:
            line = line.replace(value, "***")
        assert SIGNATURE not in line


def test_nothing_is_masked_while_urllib3_does_not_log_requests(server, tmp_path, caplog, monkeypatch):
    """The masker keeps every pattern for the task's life: links are given to it only when they could show."""
    from telnyx_provider.hooks import media

    masked: list[str] = []
    monkeypatch.setattr(media, "mask_secret", lambda value, name=None: masked.append(value))
    caplog.set_level(logging.INFO, logger="urllib3")
    hand_out(server, "{origin}" + MEDIA_PATH + f"?X-Amz-Signature={SIGNATURE}")
    server.script(MEDIA_PATH, [http_reply(200, {"Content-Length": str(len(AUDIO))}, AUDIO)])

    download(tmp_path)

    assert masked == []


# -- length proof of a content-encoded body -----------------------------------------------------------------


def gzip_stream(data: bytes, *, whole: bool = True) -> bytes:
    """``data`` gzip-encoded; not ``whole``: the stream flushed halfway and cut there (no end, no trailer)."""
    if whole:
        return gzip.compress(data)
    encoder = zlib.compressobj(9, zlib.DEFLATED, 31)
    stream = encoder.compress(data) + encoder.flush(zlib.Z_SYNC_FLUSH)
    return stream[: len(stream) // 2]


@pytest.mark.parametrize("kind", ["audio/mpeg", "audio/wav"])
def test_a_gzip_body_whose_stream_stops_short_is_not_whole_though_its_length_matches(server, tmp_path, kind):
    """The reply is whole as sent (Content-Length matches), but the gzip stream inside stops halfway: the
    decoded audio is cut. An MP3 has no length of its own to give it away."""
    hand_out(server, "{origin}" + MEDIA_PATH)
    audio = mp3_bytes(5) if kind == "audio/mpeg" else wav_bytes(5)
    body = gzip_stream(audio, whole=False)
    headers = {"Content-Type": kind, "Content-Encoding": "gzip", "Content-Length": str(len(body))}
    server.script(MEDIA_PATH, [http_reply(200, headers, body)])

    with pytest.raises(RecordingIncompleteError) as caught:
        download(tmp_path)

    assert caught.value.received < len(audio)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_whole_gzip_body_is_stored_decoded_and_identity_is_asked_for(server, tmp_path, framing):
    hand_out(server, "{origin}" + MEDIA_PATH)
    audio = mp3_bytes(5)
    body = gzip_stream(audio)
    headers = {"Content-Type": "audio/mpeg", "Content-Encoding": "gzip"}
    if framing == "chunked":
        headers["Transfer-Encoding"] = "chunked"
        body = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    else:
        headers["Content-Length"] = str(len(body))
    server.script(MEDIA_PATH, [http_reply(200, headers, body)])

    stored = download(tmp_path)

    assert (tmp_path / f"{RECORDING_SID}.mp3").read_bytes() == audio
    assert stored["size"] == len(audio)
    (_, media_headers) = next(seen for seen in server.requests if seen[0] == MEDIA_PATH)
    assert media_headers["accept-encoding"] == "identity"


@pytest.mark.parametrize(
    ("header", "coding"),
    [("Content-Encoding", "br"), ("Content-Encoding", "zstd"), ("Transfer-Encoding", "gzip, chunked")],
)
def test_a_reply_in_a_coding_not_decoded_here_is_refused_not_stored_encoded(server, tmp_path, header, coding):
    """Without brotli installed urllib3 leaves a ``br`` body as it came, and no client undoes a transfer
    coding other than chunked: the encoded bytes were stored as the audio, as whole."""
    hand_out(server, "{origin}" + MEDIA_PATH)
    body = gzip_stream(mp3_bytes(5))
    if coding.endswith("chunked"):
        body = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    else:
        body = b"\x1b" + body  # undecodable here whatever it is
    headers = {"Content-Type": "audio/mpeg", header: coding}
    if header == "Content-Encoding":
        headers["Content-Length"] = str(len(body))
    server.script(MEDIA_PATH, [http_reply(200, headers, body)])

    with pytest.raises(RecordingIncompleteError) as caught:
        download(tmp_path)

    assert coding.split(",")[0] in str(caught.value)
    assert not caught.value.retryable
    assert list(tmp_path.iterdir()) == []


# -- a download that never ends -----------------------------------------------------------------------------


def use_read_timeout(
    server: RawServer, monkeypatch: pytest.MonkeyPatch, seconds: float, retries: int
) -> None:
    extra = {"timeout": seconds, "max_retries": retries, "retry_max_wait": 0.01, "retry_budget": 30}
    conn = {
        "conn_type": "telnyx",
        "host": server.base_url,
        "login": ACCOUNT_SID,
        "password": SECRET_KEY,
        "extra": json.dumps(extra),
    }
    monkeypatch.setenv("AIRFLOW_CONN_TELNYX_DEFAULT", json.dumps(conn))


class Background(threading.Thread):
    """A download in a thread, so that a test can tell one that never ends from one that fails."""

    def __init__(self, tmp_path) -> None:
        super().__init__(daemon=True)
        self.tmp_path = tmp_path
        self.error: BaseException | None = None
        self.result: dict | None = None

    def run(self) -> None:
        try:
            self.result = RecordingHook().download_recording(RECORDING_SID, f"{self.tmp_path}/")
        except BaseException as error:  # judged by the test
            self.error = error


@pytest.mark.parametrize("framing", ["content-length", "chunked", "none"])
def test_a_media_server_trickling_a_byte_at_a_time_ends_the_attempt_as_a_stall(
    server, tmp_path, monkeypatch, framing
):
    """1 byte every 50 ms never trips a 0.5 s read timeout (each read gets its byte in time): without a
    bound on the attempt, the download goes on for as long as the server pleases."""
    use_read_timeout(server, monkeypatch, 0.5, retries=1)
    hand_out(server, "{origin}" + MEDIA_PATH)
    whole = AUDIO * 10
    headers = {"Content-Type": "audio/wav"}
    if framing == "content-length":
        headers["Content-Length"] = str(len(whole))
    elif framing == "chunked":
        headers["Transfer-Encoding"] = "chunked"
    stop = threading.Event()
    body = whole if framing != "chunked" else f"{len(whole):x}\r\n".encode() + whole
    server.script(MEDIA_PATH, [http_reply(200, headers), Trickle(body, 0.05, stop)])
    download = Background(tmp_path)
    try:
        download.start()
        download.join(30)  # each attempt should end within ~1 s; two attempts
        assert not download.is_alive(), "the download was still receiving the trickle after 30 s"
    finally:
        stop.set()
    assert isinstance(download.error, TelnyxApiError)
    assert download.error.failure == "timeout"
    assert "bytes in the last" in str(download.error)  # says it stalled, and how slowly
    assert server.count(MEDIA_PATH) == 2  # the stall is retried like any timeout, within max_retries
    assert list(tmp_path.iterdir()) == []


# -- the length proof, byte for byte (held; kept as a table) -------------------------------------------------


def chunked(data: bytes, size: int = 1000, *, last: bool = True) -> bytes:
    pieces = [data[i : i + size] for i in range(0, len(data), size)]
    body = b"".join(f"{len(piece):x}\r\n".encode() + piece + b"\r\n" for piece in pieces)
    return body + (b"0\r\n\r\n" if last else b"")


def riff(data: bytes, riff_size: int | None = None, data_size: int | None = None) -> bytes:
    """``data`` (a WAV) with its RIFF and ``data`` chunk sizes rewritten."""
    out = bytearray(data)
    if riff_size is not None:
        out[4:8] = riff_size.to_bytes(4, "little")
    if data_size is not None:
        out[40:44] = data_size.to_bytes(4, "little")
    return bytes(out)


WAV = wav_bytes(2)
WAV_WITH_LIST = riff(WAV + b"LIST\x04\x00\x00\x00abcd", riff_size=len(WAV) + 12 - 8)
H = {"Content-Type": "audio/wav"}
LENGTH_TABLE = {
    "content-length-larger-than-body": (
        http_reply(200, {**H, "Content-Length": str(len(WAV) + 100)}, WAV),
        None,
    ),
    "content-length-smaller-than-body": (
        http_reply(200, {**H, "Content-Length": str(len(WAV) - 100)}, WAV),
        None,
    ),
    "chunked-closed-at-a-chunk-boundary": (
        http_reply(200, {**H, "Transfer-Encoding": "chunked"}) + chunked(WAV[:16000], last=False),
        None,
    ),
    "chunked-whole": (http_reply(200, {**H, "Transfer-Encoding": "chunked"}) + chunked(WAV), WAV),
    "chunked-and-content-length": (
        http_reply(200, {**H, "Transfer-Encoding": "chunked", "Content-Length": "9"}) + chunked(WAV),
        WAV,
    ),
    "http10-keep-alive-whole": (http_reply(200, {**H, "Connection": "keep-alive"}, WAV, "HTTP/1.0"), WAV),
    "http10-keep-alive-cut": (
        http_reply(200, {**H, "Connection": "keep-alive"}, WAV[:5000], "HTTP/1.0"),
        None,
    ),
    "unframed-riff-says-the-cut-size": (http_reply(200, H, riff(WAV[:16000], riff_size=16000 - 8)), None),
    "unframed-streaming-wav": (http_reply(200, H, riff(WAV, 0xFFFFFFFF, 0xFFFFFFFF)), None),
    "unframed-data-size-streaming": (http_reply(200, H, riff(WAV, data_size=0xFFFFFFFF)), None),
    "unframed-list-after-data-whole": (http_reply(200, H, WAV_WITH_LIST), WAV_WITH_LIST),
    "unframed-list-after-data-cut": (http_reply(200, H, WAV_WITH_LIST[:-3]), None),
    "framed-streaming-wav": (
        http_reply(200, {**H, "Content-Length": str(len(WAV))}, riff(WAV, 0xFFFFFFFF)),
        riff(WAV, 0xFFFFFFFF),
    ),
    "duplicate-content-lengths": (
        http_reply(200, {**H, "Content-Length": str(len(WAV))})[:-2]
        + f"Content-Length: {len(WAV) // 2}\r\n\r\n".encode()
        + WAV,
        None,
    ),
    "empty-200": (http_reply(200, {**H, "Content-Length": "0"}), None),
    "rf64-unframed": (http_reply(200, H, b"RF64" + WAV[4:]), None),
}


@pytest.mark.parametrize("case", sorted(LENGTH_TABLE))
def test_the_length_proof_table(server, tmp_path, case):
    """Stored exactly as the whole audio, or refused with nothing written: never a cut copy stored."""
    reply, whole = LENGTH_TABLE[case]
    hand_out(server, "{origin}" + MEDIA_PATH)
    server.script(MEDIA_PATH, [reply])

    if whole is None:
        with pytest.raises((RecordingIncompleteError, TelnyxApiError)):
            download(tmp_path)
        assert list(tmp_path.iterdir()) == []
    else:
        stored = download(tmp_path)
        assert (tmp_path / f"{RECORDING_SID}.wav").read_bytes() == whole
        assert stored["size"] == len(whole)


def test_a_server_that_always_cuts_at_99_percent_is_given_up_after_max_retries(server, tmp_path, monkeypatch):
    use_read_timeout(server, monkeypatch, 5, retries=2)
    hand_out(server, "{origin}" + MEDIA_PATH)
    almost = len(WAV) * 99 // 100
    server.script(MEDIA_PATH, [http_reply(200, {**H, "Content-Length": str(len(WAV))}, WAV[:almost])])

    with pytest.raises(TelnyxApiError, match=f"cut after {almost} bytes"):
        RecordingHook().download_recording(RECORDING_SID, f"{tmp_path}/")

    assert server.count(MEDIA_PATH) == 3
    assert list(tmp_path.iterdir()) == []
