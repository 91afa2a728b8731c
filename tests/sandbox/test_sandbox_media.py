"""Media: pre-signed-looking links that expire, S3-like refusals, chunked WAVs, cut transfers, no auth."""

from __future__ import annotations

import http.client
import io
import re
import time
import wave
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

LINK = re.compile(
    r"http://127\.0\.0\.1:\d+/media/([0-9a-f-]{36})\.wav\?Expires=(\d+)&Signature=([0-9a-f]{64})"
)


def completed(client, wait, *, call_options=None, **form) -> dict:
    """Start a recording, stop it and return its completed JSON."""
    call = client.sandbox.create_call(**(call_options or {}))
    sid = client.start_ok(call, **form)["sid"]
    client.update(call, sid, "stopped")
    return wait(lambda: (body := client.get(sid).json())["status"] == "completed" and body)


def s3_code(reply: requests.Response) -> str:
    assert reply.headers["Content-Type"] == "application/xml"
    match = re.search(r"<Code>(\w+)</Code>", reply.text)
    assert match is not None, reply.text
    return match.group(1)


def raw_get(url: str, method: str = "GET") -> tuple[http.client.HTTPResponse, http.client.HTTPConnection]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    connection.request(method, f"{parts.path}?{parts.query}")
    return connection.getresponse(), connection


def test_media_url_is_a_signed_link_served_without_auth(sandbox_make, sandbox_wait):
    client = sandbox_make(processing_delay=0.05)
    done = completed(client, sandbox_wait, RecordingChannels="single")
    match = LINK.fullmatch(done["media_url"])
    assert match is not None, done["media_url"]
    assert match.group(1) == done["sid"]
    assert 595 <= int(match.group(2)) - time.time() <= 601  # default ttl 600 s
    plain = requests.get(done["media_url"], timeout=5)  # no Authorization header
    assert plain.status_code == 200
    assert (plain.headers["Content-Type"], int(plain.headers["Content-Length"])) == (
        "audio/wav",
        len(plain.content),
    )
    with wave.open(io.BytesIO(plain.content)) as audio:
        assert (audio.getnchannels(), audio.getsampwidth(), audio.getframerate()) == (1, 2, 8000)
        assert audio.getnframes() == 8000 * int(done["duration"])
    leaked = client.session.get(done["media_url"], timeout=5)  # this session sends the API key
    assert leaked.status_code == 200
    stats = client.sandbox.stats()
    assert (stats["media_requests"], stats["media_requests_with_auth"]) == (2, 1)
    assert "GET /media" not in str(stats["requests_by_route"])  # media are not API requests


def test_each_read_gives_a_fresh_link_that_expires_after_the_ttl(sandbox_make, sandbox_wait):
    client = sandbox_make(processing_delay=0.05, media_url_ttl=1)
    done = completed(client, sandbox_wait)
    expires = int(parse_qs(urlsplit(done["media_url"]).query)["Expires"][0])
    assert time.time() < expires <= time.time() + 2
    assert requests.get(done["media_url"], timeout=5).status_code == 200
    sandbox_wait(lambda: time.time() >= expires + 0.05, timeout=3)
    expired = requests.get(done["media_url"], timeout=5)
    assert expired.status_code == 403
    assert s3_code(expired) == "AccessDenied"
    assert "expired" in expired.text
    fresh = client.get(done["sid"]).json()["media_url"]
    assert int(parse_qs(urlsplit(fresh).query)["Expires"][0]) > expires
    assert requests.get(fresh, timeout=5).status_code == 200


def test_tampered_links_are_refused(sandbox_make, sandbox_wait):
    client = sandbox_make(processing_delay=0.05)
    first = completed(client, sandbox_wait)
    second = completed(client, sandbox_wait)
    link = first["media_url"]
    expires = parse_qs(urlsplit(link).query)["Expires"][0]
    signature = link[-1]
    flipped = link[:-1] + ("0" if signature != "0" else "1")
    for bad in (
        flipped,
        link.replace(f"Expires={expires}", f"Expires={int(expires) + 3600}"),
        link.replace(first["sid"], second["sid"]),
        link.split("?")[0],
    ):
        reply = requests.get(bad, timeout=5)
        assert reply.status_code == 403, bad
        assert s3_code(reply) in ("SignatureDoesNotMatch", "AccessDenied")
    assert s3_code(requests.get(flipped, timeout=5)) == "SignatureDoesNotMatch"


def test_a_deleted_recordings_link_answers_404(sandbox_make, sandbox_wait):
    client = sandbox_make(processing_delay=0.05)
    done = completed(client, sandbox_wait)
    assert client.session.delete(client.recording_url(done["sid"]), timeout=5).status_code == 204
    gone = requests.get(done["media_url"], timeout=5)
    assert (gone.status_code, s3_code(gone)) == (404, "NoSuchKey")


def test_long_media_is_served_in_full_in_chunks(sandbox_make, sandbox_wait):
    client = sandbox_make(processing_delay=0.05, media_seconds_cap=60)
    done = completed(client, sandbox_wait, call_options={"audio_seconds": 60}, RecordingChannels="single")
    assert done["duration"] == "60"
    reply, connection = raw_get(done["media_url"])
    try:
        assert reply.status == 200
        length = int(reply.getheader("Content-Length"))
        assert length == 44 + 60 * 8000 * 2  # ~1 MB
        pieces = []
        while chunk := reply.read1(64 * 1024):
            pieces.append(chunk)
        body = b"".join(pieces)
    finally:
        connection.close()
    assert len(body) == length
    with wave.open(io.BytesIO(body)) as audio:
        assert (audio.getnchannels(), audio.getnframes()) == (1, 60 * 8000)


def test_media_seconds_cap_keeps_media_small_by_default(sandbox_make, sandbox_wait):
    client = sandbox_make(processing_delay=0.05)
    done = completed(client, sandbox_wait, call_options={"audio_seconds": 60})  # dual channels
    assert done["duration"] == "60"  # the recording says 60 s; the file holds the cap, 5 s
    media = requests.get(done["media_url"], timeout=5).content
    with wave.open(io.BytesIO(media)) as audio:
        assert (audio.getnchannels(), audio.getnframes()) == (2, 5 * 8000)


def test_injected_cut_sends_the_full_length_header_then_half_the_bytes(sandbox_make, sandbox_wait):
    client = sandbox_make(processing_delay=0.05, media_seconds_cap=10)
    done = completed(client, sandbox_wait, call_options={"audio_seconds": 10})
    client.sandbox.inject_media("cut")
    head, connection = raw_get(done["media_url"], "HEAD")  # a HEAD does not use the cut up
    connection.close()
    assert head.status == 200
    reply, connection = raw_get(done["media_url"])
    try:
        length = int(reply.getheader("Content-Length"))
        with pytest.raises(http.client.IncompleteRead) as cut:
            reply.read()
    finally:
        connection.close()
    assert (len(cut.value.partial), cut.value.expected) == (length // 2, length - length // 2)
    client.sandbox.inject_media("cut")
    streamed = requests.get(done["media_url"], stream=True, timeout=5)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):  # what a streaming client sees
        b"".join(streamed.iter_content(8192))
    streamed.close()
    assert len(requests.get(done["media_url"], timeout=5).content) == length  # then whole again
    stats = client.sandbox.stats()
    assert stats["media_faults_injected"]["cut"] == 2
    assert stats["media_injections_pending"] == []


def test_cut_rate_cuts_transfers_at_random(sandbox_make, sandbox_wait):
    client = sandbox_make(processing_delay=0.05, media_cut_rate=1.0)
    done = completed(client, sandbox_wait)
    for _ in range(3):
        reply, connection = raw_get(done["media_url"])
        with pytest.raises(http.client.IncompleteRead):
            reply.read()
        connection.close()
    assert client.sandbox.stats()["media_faults_injected"]["cut"] == 3


@pytest.mark.parametrize(
    ("kind", "status", "code"), [("403", 403, "AccessDenied"), ("404", 404, "NoSuchKey")]
)
def test_injected_refusals_hit_once_each(sandbox_make, sandbox_wait, kind, status, code):
    client = sandbox_make(processing_delay=0.05)
    done = completed(client, sandbox_wait)
    client.sandbox.inject_media(kind, count=2)
    replies = [requests.get(done["media_url"], timeout=5) for _ in range(3)]
    assert [reply.status_code for reply in replies] == [status, status, 200]
    assert s3_code(replies[0]) == code
    assert client.sandbox.stats()["media_faults_injected"][kind] == 2


def test_inject_media_control_route_and_validation(sandbox_client):
    sandbox = sandbox_client.sandbox
    url = f"{sandbox.origin}/_sandbox/inject_media"
    reply = requests.post(url, json={"kind": "cut", "count": 2}, timeout=5)
    assert reply.json() == {"media_injections_pending": [{"kind": "cut", "count": 2}]}
    assert requests.post(url, json={"kind": "boom"}, timeout=5).status_code == 422
    with pytest.raises(ValueError, match="count"):
        sandbox.inject_media("403", count=0)


def test_media_options_are_validated():
    from telnyx_provider.sandbox import Sandbox

    with pytest.raises(ValueError, match="media_url_ttl"):
        Sandbox(media_url_ttl=0)
    with pytest.raises(ValueError, match="media_seconds_cap"):
        Sandbox(media_seconds_cap=0)
    with pytest.raises(ValueError, match="media_cut_rate"):
        Sandbox(media_cut_rate=2)
    with pytest.raises(ValueError, match="audio_seconds"):
        Sandbox().create_call(audio_seconds=0)
