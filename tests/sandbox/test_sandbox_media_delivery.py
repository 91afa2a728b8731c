"""How the sandbox delivers media: framing (length, chunked, none at all), WAV or MP3, slowly, redirected,
or under a link of the test's choosing. Read with raw sockets, so what is on the wire is what is asserted."""

from __future__ import annotations

import io
import socket
import time
import wave
from urllib.parse import urlsplit

import pytest
import requests

from telnyx_provider.sandbox.media import mp3_bytes, wav_bytes
from tests.sandbox.test_sandbox_media import completed


def raw_exchange(url: str) -> tuple[bytes, bytes]:
    """GET ``url`` over a bare socket and read until the server closes: (head, body) as sent."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(
            f"GET {parts.path}?{parts.query} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


def header(head: bytes, name: str) -> str | None:
    for line in head.decode("latin-1").split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


def dechunk(body: bytes) -> tuple[bytes, bool]:
    """The chunks' data, and whether the terminating zero-size chunk was there."""
    data, rest = b"", body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return data, True
        data, rest = data + rest[:size], rest[size + 2 :]
    return data, False


@pytest.fixture
def client(sandbox_make, sandbox_wait):
    client = sandbox_make(processing_delay=0.05)
    client.done = lambda **options: completed(client, sandbox_wait, call_options=options)
    return client


def test_close_framing_sends_no_length_and_ends_the_body_by_closing(client):
    client.sandbox.configure_media(framing="close")
    done = client.done(audio_seconds=2)

    head, body = raw_exchange(done["media_url"])

    assert head.startswith(b"HTTP/1.0 200")
    assert header(head, "Content-Length") is None
    assert header(head, "Transfer-Encoding") is None
    assert body == wav_bytes(2, 2)


def test_close_framing_cut_halfway_looks_like_a_whole_body_on_the_wire(client):
    client.sandbox.configure_media(framing="close")
    done = client.done(audio_seconds=2)
    client.sandbox.inject_media("cut")

    head, body = raw_exchange(done["media_url"])

    whole = wav_bytes(2, 2)
    assert header(head, "Content-Length") is None
    assert body == whole[: len(whole) // 2]  # the connection just closed: nothing says it was cut
    assert int.from_bytes(body[4:8], "little") + 8 == len(whole)  # but the WAV header still knows


def test_chunked_framing_whole_and_cut(client):
    client.sandbox.configure_media(framing="chunked")
    done = client.done(audio_seconds=2)
    head, body = raw_exchange(done["media_url"])
    assert header(head, "Transfer-Encoding") == "chunked"
    assert header(head, "Content-Length") is None
    assert dechunk(body) == (wav_bytes(2, 2), True)

    client.sandbox.inject_media("cut")
    _, cut = raw_exchange(done["media_url"])
    data, terminated = dechunk(cut)
    assert not terminated
    assert data == wav_bytes(2, 2)[: len(wav_bytes(2, 2)) // 2]


def test_mp3_links_serve_an_mp3_that_states_no_length(client):
    client.sandbox.configure_media(audio_format="mp3")
    done = client.done(audio_seconds=3)
    assert urlsplit(done["media_url"]).path.endswith(f"/{done['sid']}.mp3")

    reply = requests.get(done["media_url"], timeout=5)

    assert reply.headers["Content-Type"] == "audio/mpeg"
    assert reply.content == mp3_bytes(3)
    assert reply.content[:2] == b"\xff\xfb"  # an MPEG-1 Layer III frame, no header with a length
    assert len(reply.content) % 144 == 0

    client.sandbox.configure_media()  # back to WAV: links handed out earlier still serve their format
    assert requests.get(done["media_url"], timeout=5).content == mp3_bytes(3)
    wav_link = client.get(done["sid"]).json()["media_url"]
    with wave.open(io.BytesIO(requests.get(wav_link, timeout=5).content)) as audio:
        assert audio.getnframes() == 3 * 8000


def test_tampering_with_the_extension_breaks_the_signature(client):
    done = client.done()
    swapped = done["media_url"].replace(".wav?", ".mp3?")
    assert requests.get(swapped, timeout=5).status_code == 403


def test_slow_media_take_at_least_their_length_over_the_rate(client):
    done = client.done(audio_seconds=1)
    client.sandbox.configure_media(bytes_per_second=16000)  # 32,044 bytes: at least 2 s

    started = time.monotonic()
    body = requests.get(done["media_url"], timeout=10).content
    elapsed = time.monotonic() - started

    assert body == wav_bytes(1, 2)
    assert elapsed >= 1.9  # a lower bound only: the sandbox sleeps between pieces


def test_a_scripted_redirect_answers_302_with_the_location_as_given(client):
    done = client.done()
    odd = "http://127.0.0.1:1\\@example.test/\t?x"
    client.sandbox.inject_media("redirect", count=1, location=odd)
    assert client.sandbox.stats()["media_injections_pending"] == [
        {"kind": "redirect", "count": 1, "location": odd}
    ]

    head, _ = raw_exchange(done["media_url"])

    assert head.startswith(b"HTTP/1.1 302")
    assert header(head, "Location") == odd.strip()
    assert requests.get(done["media_url"], timeout=5).status_code == 200  # used up
    assert client.sandbox.stats()["media_faults_injected"]["redirect"] == 1


def test_a_link_override_replaces_every_media_url(client):
    done = client.done()
    signed = urlsplit(done["media_url"])
    client.sandbox.configure_media(
        link="http://localhost:{port}{path}#{sid}".replace("{port}", str(signed.port))
    )

    link = client.get(done["sid"]).json()["media_url"]

    parts = urlsplit(link)
    assert (parts.hostname, parts.port, parts.fragment) == ("localhost", signed.port, done["sid"])
    assert parts.path == signed.path
    assert requests.get(link, timeout=5).status_code == 200  # the same sandbox, under another name


def test_media_control_route_sets_and_resets_delivery(client):
    url = f"{client.sandbox.origin}/_sandbox/media"
    reply = requests.post(
        url, json={"framing": "close", "format": "mp3", "bytes_per_second": 50000}, timeout=5
    )
    assert reply.json() == {"framing": "close", "format": "mp3", "bytes_per_second": 50000.0, "link": None}
    done = client.done()
    assert done["media_url"].split("?")[0].endswith(".mp3")
    assert header(raw_exchange(done["media_url"])[0], "Content-Length") is None

    assert requests.post(url, json={}, timeout=5).json()["framing"] == "length"
    assert requests.post(url, json={"framing": "telegraph"}, timeout=5).status_code == 422
    assert requests.post(url, json={"bytes_per_second": "fast"}, timeout=5).status_code == 400
    redirect = f"{client.sandbox.origin}/_sandbox/inject_media"
    assert requests.post(redirect, json={"kind": "redirect"}, timeout=5).status_code == 422  # no location


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"media_framing": "smoke"}, "framing"),
        ({"media_format": "ogg"}, "format"),
        ({"media_bytes_per_second": 0}, "bytes_per_second"),
    ],
)
def test_delivery_options_are_validated(options, message):
    from telnyx_provider.sandbox import Sandbox

    with pytest.raises(ValueError, match=message):
        Sandbox(**options)


def test_only_a_redirect_takes_a_location(client):
    with pytest.raises(ValueError, match="location"):
        client.sandbox.inject_media("cut", location="http://x/")
    with pytest.raises(ValueError, match="location"):
        client.sandbox.inject_media("redirect")


def test_cli_flags_for_media_delivery(capsys):
    from telnyx_provider.sandbox import cli

    args = cli.build_parser().parse_args(["--media-framing", "close", "--media-format", "mp3"])
    assert (args.media_framing, args.media_format, args.media_bytes_per_second) == ("close", "mp3", None)
    with pytest.raises(SystemExit) as exited:
        cli.main(["--port", "0", "--media-bytes-per-second", "0"])
    assert exited.value.code == 2
    assert "bytes_per_second" in capsys.readouterr().err
