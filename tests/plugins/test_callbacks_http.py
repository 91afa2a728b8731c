"""The receiver behind a real uvicorn on loopback: oversize bodies are refused before they are read."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import socket
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING

import pytest
import uvicorn

from telnyx_provider.plugins.callbacks import ReceiverSettings, create_app

if TYPE_CHECKING:
    from collections.abc import Iterator


@contextmanager
def serve(settings: ReceiverSettings) -> Iterator[int]:
    """The receiver behind a real uvicorn on a free loopback port; stopped at the end."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(create_app(settings), log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture
def receiver_port(signer) -> Iterator[int]:
    with serve(ReceiverSettings()) as port:
        yield port


def _exchange(port: int, head: bytes, body_parts: list[bytes]) -> bytes:
    """Send a request's head and body parts; return the status line the server answers with."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(head)
        for part in body_parts:
            try:
                conn.sendall(part)
            except OSError:  # the server answered and closed: it stopped reading
                break
        return conn.recv(4096).split(b"\r\n", 1)[0]


def test_a_declared_length_over_the_limit_is_refused_without_waiting_for_the_body(receiver_port):
    head = (
        b"POST /recording-status HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000000000\r\n\r\n"
    )
    started = time.monotonic()
    status = _exchange(receiver_port, head, [b"AccountSid=a"])  # 1 GB promised, a few bytes sent
    assert status == b"HTTP/1.1 413 Request Entity Too Large"
    assert time.monotonic() - started < 5  # it did not wait for the promised gigabyte


def _well_formed_signature_headers() -> bytes:
    """Signature headers that pass the checks needing no key (anyone can make them: nothing is verified)."""
    signature = base64.b64encode(os.urandom(64))
    stamp = str(int(time.time())).encode()
    return b"telnyx-signature-ed25519: " + signature + b"\r\ntelnyx-timestamp: " + stamp + b"\r\n"


def test_a_chunked_body_is_cut_off_at_the_limit(receiver_port):
    head = (
        b"POST /recording-status HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n"
        + _well_formed_signature_headers()
        + b"\r\n"
    )
    chunk = b"1000\r\n" + b"x" * 4096 + b"\r\n"
    # Three 4 KiB chunks cross the 8 KiB limit; the rest (never ending) is not needed for the answer.
    status = _exchange(receiver_port, head, [chunk, chunk, chunk])
    assert status == b"HTTP/1.1 413 Request Entity Too Large"


# --- slow bodies (review finding): an unsigned request is refused before its body is read, and a body that
# does not arrive in time is refused, so slow senders cannot hold the receiver's connections for ever ------
def _status_within(port: int, head: bytes, body_parts: list[bytes], seconds: float) -> bytes:
    """The status line the server answers with, within ``seconds`` (the body is sent, then nothing more)."""
    with socket.create_connection(("127.0.0.1", port), timeout=seconds) as conn:
        conn.sendall(head)
        for part in body_parts:
            conn.sendall(part)
        try:
            return conn.recv(4096).split(b"\r\n", 1)[0]
        except TimeoutError:
            return b"no answer within %.0f s" % seconds


def test_an_unsigned_request_is_refused_without_waiting_for_its_body(receiver_port):
    head = (
        b"POST /recording-status HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 200\r\n\r\n"
    )
    status = _status_within(receiver_port, head, [b"AccountSid=a"], seconds=10)  # 200 bytes promised
    assert status == b"HTTP/1.1 401 Unauthorized"


def test_a_body_that_does_not_arrive_in_time_is_refused(signer):
    # Well-formed signature headers and a body that never comes.
    head = (
        b"POST /recording-status HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 200\r\n"
        + _well_formed_signature_headers()
        + b"\r\n"
    )
    with serve(ReceiverSettings(body_timeout=1.0)) as port:
        status = _status_within(port, head, [b"AccountSid=a"], seconds=10)
    assert status == b"HTTP/1.1 408 Request Timeout"


# --- a sender that goes away mid-body (review finding): uvicorn logged an unhandled exception (500) with its
# traceback for every such request; it is a refusal like the others, logged in one line -------------------
class _Records(logging.Handler):
    """Collects what a logger emits, and tells a waiting test when a record arrived."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.arrived = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.arrived.set()


def test_a_sender_that_disconnects_mid_body_is_refused_without_a_traceback(signer):
    head = (
        b"POST /recording-status HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 200\r\n"
        + _well_formed_signature_headers()
        + b"\r\n"
    )
    seen = _Records()
    loggers = [logging.getLogger(name) for name in ("uvicorn.error", "telnyx_provider.plugins.callbacks")]
    with serve(ReceiverSettings(body_timeout=30.0)) as port:
        for logger in loggers:
            logger.addHandler(seen)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                conn.sendall(head + b"AccountSid=AC0123&RecordingUrl=https%3A%2F%2Fmedia.example%2Fsecret")
            # The connection is closed with 150 bytes of the body still owed.
            assert seen.arrived.wait(20), "the receiver said nothing about the request"
        finally:
            for logger in loggers:
                logger.removeHandler(seen)
    assert [r.levelno for r in seen.records if r.exc_info] == [], "an unhandled exception was logged"
    lines = [r.getMessage() for r in seen.records]
    assert any("went away before its body arrived" in line for line in lines), lines
    assert not any("media.example" in line for line in lines)
