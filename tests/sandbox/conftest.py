"""Fixtures for the sandbox tests: a running sandbox, an authenticated client and a callback receiver."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, urlsplit

import pytest
import requests

from telnyx_provider.sandbox import Sandbox

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


def wait_for(condition: Callable[[], Any], timeout: float = 5.0, interval: float = 0.02) -> Any:
    """Poll ``condition`` until it returns something truthy (returned), failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s (last value {value!r})")
        time.sleep(interval)


class SandboxClient:
    """A requests session against one sandbox, with URL builders for the TeXML recording routes."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {sandbox.api_key}"
        self.account = f"{sandbox.base_url}/texml/Accounts/{sandbox.account_sid}"

    def call_recordings_url(self, call_sid: str) -> str:
        return f"{self.account}/Calls/{quote(call_sid, safe='')}/Recordings.json"

    def call_recording_url(self, call_sid: str, recording_sid: str) -> str:
        return f"{self.account}/Calls/{quote(call_sid, safe='')}/Recordings/{recording_sid}.json"

    def recording_url(self, recording_sid: str) -> str:
        return f"{self.account}/Recordings/{recording_sid}.json"

    def start(self, call_sid: str, **form: str) -> requests.Response:
        return self.session.post(self.call_recordings_url(call_sid), data=form, timeout=5)

    def start_ok(self, call_sid: str, **form: str) -> dict[str, Any]:
        reply = self.start(call_sid, **form)
        assert reply.status_code == 200, reply.text
        body: dict[str, Any] = reply.json()
        return body

    def update(self, call_sid: str, recording_sid: str, status: str) -> requests.Response:
        return self.session.post(
            self.call_recording_url(call_sid, recording_sid), data={"Status": status}, timeout=5
        )

    def get(self, recording_sid: str) -> requests.Response:
        return self.session.get(self.recording_url(recording_sid), timeout=5)

    def status(self, recording_sid: str) -> str:
        status: str = self.get(recording_sid).json()["status"]
        return status


@pytest.fixture
def sandbox_server() -> Iterator[Sandbox]:
    """A sandbox on a free port with a short processing delay."""
    with Sandbox(port=0, processing_delay=0.2) as sandbox:
        yield sandbox


@pytest.fixture
def sandbox_client(sandbox_server: Sandbox) -> Iterator[SandboxClient]:
    """An authenticated client of ``sandbox_server``."""
    client = SandboxClient(sandbox_server)
    yield client
    client.session.close()


@dataclass
class Received:
    """One request the callback receiver got."""

    method: str
    path: str
    query: dict[str, str]
    form: dict[str, str]
    content_type: str | None
    headers: dict[str, str] = field(default_factory=dict)
    raw_body: bytes = b""
    raw_query: str = ""


class CallbackReceiver:
    """A tiny stdlib HTTP server on a free port that records every request it gets."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                item = Received(
                    self.command,
                    parts.path,
                    dict(parse_qsl(parts.query)),
                    dict(parse_qsl(raw.decode())),
                    self.headers.get("Content-Type"),
                    {name.lower(): value for name, value in self.headers.items()},
                    raw,
                    parts.query,
                )
                with receiver._lock:
                    receiver.received.append(item)
                status = 500 if parts.path.endswith("/fail") else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = _record

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def items(self) -> list[Received]:
        with self._lock:
            return list(self.received)


@pytest.fixture
def sandbox_receiver() -> Iterator[CallbackReceiver]:
    """A running callback receiver; ``.url`` is its base URL, ``.items()`` what it received."""
    receiver = CallbackReceiver()
    receiver.thread.start()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


@pytest.fixture
def sandbox_wait() -> Callable[..., Any]:
    """``wait_for(condition, timeout=5.0)``: poll until ``condition()`` is truthy, with a bounded deadline."""
    return wait_for


@pytest.fixture
def sandbox_make() -> Iterator[Callable[..., SandboxClient]]:
    """``make(**Sandbox kwargs)``: start a sandbox with custom settings and return a client of it."""
    started: list[SandboxClient] = []

    def make(**kwargs: Any) -> SandboxClient:
        client = SandboxClient(Sandbox(port=0, **kwargs).start())
        started.append(client)
        return client

    yield make
    for client in started:
        client.session.close()
        client.sandbox.stop()
