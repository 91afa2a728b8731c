"""A loopback server that answers each request with scripted raw bytes: the media host as a hostile or buggy
server behaves, byte for byte (a wrong ``Content-Length``, a chunked body ended by a close, a gzip body, a
WAV whose header lies, a trickle, a reply held open until the test lets it go).

It also answers the recording's JSON (as the API), so ``RecordingHook.download_recording`` runs unchanged
against it: point ``telnyx_default`` at :attr:`RawServer.base_url` and give the recording a ``media_url`` on
:attr:`RawServer.origin`. Each request to a raw path takes the next script (the last one repeats).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Hold:
    """Write nothing until ``event`` is set (or ``timeout`` passed); then go on with the script."""

    event: threading.Event
    timeout: float = 30.0


@dataclass(frozen=True)
class Trickle:
    """Write ``data`` one byte at a time, ``interval`` seconds apart, while ``until`` is not set."""

    data: bytes
    interval: float
    until: threading.Event


@dataclass(frozen=True)
class Signal:
    """Set ``event`` once the bytes before it were written (the client may read them)."""

    event: threading.Event


#: A step of a script: bytes to write, or one of the dataclasses above; the connection is closed at the end.
Step = bytes | Hold | Trickle | Signal


def http_reply(status: int, headers: dict[str, str], body: bytes = b"", version: str = "HTTP/1.1") -> bytes:
    """A reply's bytes exactly as given (no header added or fixed)."""
    lines = [f"{version} {status} X"] + [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class RawServer:
    """Serve on a free port of 127.0.0.1; see the module docstring.

    :param recording: the recording JSON the API path answers (``media_url`` set by the test).
    :param recording_path: the API path of that recording (below ``/v2``).
    """

    def __init__(self, recording: dict[str, Any] | None = None, recording_path: str = "") -> None:
        self.recording = recording
        self.recording_path = recording_path
        self.scripts: dict[str, list[list[Step]]] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._socket.settimeout(0.1)
        self.port = self._socket.getsockname()[1]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, daemon=True)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v2"

    def script(self, path: str, *scripts: list[Step]) -> None:
        """What requests for ``path`` get, in order (the last script repeats)."""
        with self._lock:
            self.scripts[path] = list(scripts)

    def count(self, path: str) -> int:
        with self._lock:
            return sum(1 for seen, _ in self.requests if seen == path)

    def __enter__(self) -> RawServer:
        self._acceptor.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._acceptor.join(5)
        for thread in self._threads:
            thread.join(5)
        self._socket.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._socket.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(connection,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, connection: socket.socket) -> None:
        with connection:
            connection.settimeout(30)
            reader = connection.makefile("rb")
            try:
                while not self._stop.is_set():
                    line = reader.readline()
                    if not line:
                        return
                    path = line.split()[1].decode("latin-1")
                    headers: dict[str, str] = {}
                    while (header := reader.readline()) not in (b"\r\n", b"\n", b""):
                        name, _, value = header.decode("latin-1").partition(":")
                        headers[name.strip().lower()] = value.strip()
                    with self._lock:
                        self.requests.append((path.split("?", 1)[0], headers))
                    if not self._answer(connection, path):
                        return
            except OSError:
                return

    def _answer(self, connection: socket.socket, path: str) -> bool:
        """Answer one request; whether the connection stays open for another."""
        bare = path.split("?", 1)[0]
        with self._lock:
            scripts = self.scripts.get(bare)
            script = (scripts.pop(0) if len(scripts) > 1 else scripts[0]) if scripts else None
        if script is None:
            if self.recording is not None and bare == f"/v2{self.recording_path}":
                body = json.dumps(self.recording).encode()
                headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
                connection.sendall(http_reply(200, headers, body))
                return True
            connection.sendall(http_reply(404, {"Content-Length": "0"}))
            return True
        for step in script:
            if isinstance(step, bytes):
                connection.sendall(step)
            elif isinstance(step, Hold):
                step.event.wait(step.timeout)
            elif isinstance(step, Signal):
                step.event.set()
            else:
                for byte in step.data:
                    if step.until.is_set() or self._stop.is_set():
                        break
                    connection.sendall(bytes([byte]))
                    time.sleep(step.interval)
        connection.shutdown(socket.SHUT_RDWR)
        return False
