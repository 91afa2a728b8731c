"""A loopback HTTP server that records every request it gets, above all whether it carried ``Authorization``.

It stands for any host a media link or redirect may point at: a storage host, an open redirect, someone on
the path of a plain-http link. It answers

- ``GET /redirect?to=<url>``: ``302`` with ``Location`` set to ``to`` exactly as given (tabs, backslashes...);
- ``GET <the scripted recording path>``: the scripted recording JSON (when it also plays the API);
- anything else: ``200`` with a valid WAV and its ``Content-Length``.

It is also a forward proxy (absolute-form request targets): requests for a host in ``forward`` are relayed to
that loopback address (the sandbox), so names that resolve nowhere (``api.telnyx.test``, its look-alikes)
reach real servers; requests for any other host are recorded and answered as above. With ``tls`` it speaks
TLS or plain HTTP on the same port, telling them apart by the first byte (for the https -> http downgrade).
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from telnyx_provider.sandbox.media import wav_bytes

AUDIO = wav_bytes(1)
_HOP_HEADERS = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "content-length"}


@dataclass(frozen=True)
class Seen:
    """One request: the host:port it was meant for, its path, its ``Authorization`` (or None), and
    whether it was relayed to a ``forward`` target (the API) rather than answered here."""

    target: str
    path: str
    authorization: str | None
    relayed: bool
    tls: bool


class Collector:
    """Serve on ``host`` (a free port unless ``port``); see the module docstring.

    :param host: the loopback address to bind (``127.0.0.1``, ``127.0.0.2``, ``::1``).
    :param port: the port, 0 for a free one.
    :param forward: ``{"name:port": (address, port)}``: proxied requests relayed there.
    :param tls: a server TLS context: TLS and plain HTTP on the same port.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        forward: dict[str, tuple[str, int]] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.seen: list[Seen] = []
        self.forward = dict(forward or {})
        self.tls = tls
        self.recording_path: str | None = None
        self.recording: dict[str, Any] | None = None
        self._lock = threading.Lock()
        collector = self

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = False
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

            def finish_request(self, request: Any, client_address: Any) -> None:
                if collector.tls is not None and request.recv(1, socket.MSG_PEEK) == b"\x16":
                    request = collector.tls.wrap_socket(request, server_side=True)
                Handler(request, client_address, self)

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # clients that refuse or drop a reply are the point of some tests

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                collector._serve(self)

            do_HEAD = do_POST = do_DELETE = do_GET

        self._server = Server((host, port), Handler)
        self.host = host
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def origin(self) -> str:
        """``http://host:port`` of this collector."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def __enter__(self) -> Collector:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def keys_received(self) -> list[Seen]:
        """Requests answered here (not relayed to the API) that carried an ``Authorization`` header."""
        with self._lock:
            return [seen for seen in self.seen if seen.authorization is not None and not seen.relayed]

    def answered(self) -> list[Seen]:
        """Requests answered here (not relayed)."""
        with self._lock:
            return [seen for seen in self.seen if not seen.relayed]

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        target = handler.path
        if target.startswith(("http://", "https://")):  # a proxy request
            parts = urlsplit(target)
            where = f"{parts.hostname}:{parts.port or 80}"
            path = parts.path + (f"?{parts.query}" if parts.query else "")
        else:
            where, path = f"{self.host}:{self.port}", target
        relay = self.forward.get(where)
        seen = Seen(
            where,
            path,
            handler.headers.get("Authorization"),
            relay is not None,
            isinstance(handler.connection, ssl.SSLSocket),
        )
        with self._lock:
            self.seen.append(seen)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        if relay is not None:
            self._relay(handler, relay, path, body)
            return
        parts = urlsplit(path)
        if parts.path == "/redirect":
            location = parse_qs(parts.query, keep_blank_values=True)["to"][0]
            self._reply(handler, 302, b"", {"Location": location})
        elif self.recording is not None and parts.path == self.recording_path:
            body = json.dumps(self.recording).encode()
            self._reply(handler, 200, body, {"Content-Type": "application/json"})
        else:
            self._reply(handler, 200, AUDIO, {"Content-Type": "audio/wav"})

    @staticmethod
    def _reply(handler: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str]) -> None:
        # Raw header lines: send_header would refuse nothing, but spell the Location exactly as scripted.
        lines = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        handler.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    @staticmethod
    def _relay(handler: BaseHTTPRequestHandler, address: tuple[str, int], path: str, body: bytes) -> None:
        connection = http.client.HTTPConnection(*address, timeout=10)
        try:
            headers = {k: v for k, v in handler.headers.items() if k.lower() not in _HOP_HEADERS}
            connection.request(handler.command, path, body=body or None, headers=headers)
            reply = connection.getresponse()
            payload = reply.read()
            kept = {k: v for k, v in reply.getheaders() if k.lower() not in _HOP_HEADERS}
        finally:
            connection.close()
        lines = [f"HTTP/1.1 {reply.status} {reply.reason}", f"Content-Length: {len(payload)}"]
        lines += [f"{name}: {value}" for name, value in kept.items()]
        handler.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload)
