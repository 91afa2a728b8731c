"""The sandbox's HTTP layer: a threading ``http.server`` with keep-alive, fault injection and lean replies."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import socketserver
import struct
import sys
import threading
import time
from email.utils import formatdate
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, cast

from telnyx_provider.sandbox.api import RecordingApi, Reply, error_reply
from telnyx_provider.sandbox.control import Controls, handle_control
from telnyx_provider.sandbox.errors import CODE_BAD_REQUEST, CODE_UNEXPECTED, ApiError
from telnyx_provider.sandbox.faults import ERRORS_AFTER_HANDLING, RESET_KINDS
from telnyx_provider.sandbox.media_route import Transfer

if TYPE_CHECKING:
    from telnyx_provider.sandbox.faults import FaultInjector
    from telnyx_provider.sandbox.media_route import MediaRoute
    from telnyx_provider.sandbox.stats import Stats

log = logging.getLogger(__name__)

MAX_BODY = 1 << 20
CHUNK = 16 * 1024  # media bodies go out in writes of this size
_GET_ONE = "GET /Recordings/{sid}"
#: Pause, resume and stop of one recording: counted per recording too.
_UPDATE_ONE = "POST /Calls/{call_sid}/Recordings/{sid}"
#: Listings: the recordings each page served are counted per recording.
_LISTS = ("GET /Recordings", "GET /Calls/{call_sid}/Recordings")
_LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST instead of FIN
_AT_ONCE = Transfer()


@lru_cache(maxsize=4)
def _http_date(second: int) -> str:
    return formatdate(second, usegmt=True)


class SandboxHTTPServer(ThreadingHTTPServer):
    """Threading HTTP server (one daemon thread per connection) that tracks its open connections.

    :param address: ``(host, port)`` to bind; port 0 picks a free port.
    :param api: answers the ``/v2`` routes.
    :param controls: answers the ``/_sandbox`` routes.
    :param injector: decides faults on ``/v2`` routes.
    :param stats: counters to update.
    :param media: answers the ``/media/`` routes.
    """

    daemon_threads = True
    block_on_close = False  # keep-alive connections are closed by close_connections() instead
    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        api: RecordingApi,
        controls: Controls,
        injector: FaultInjector,
        stats: Stats,
        media: MediaRoute,
    ) -> None:
        self.api = api
        self.media = media
        self.controls = controls
        self.injector = injector
        self.stats = stats
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, SandboxRequestHandler)

    def server_bind(self) -> None:
        """Bind without ``HTTPServer``'s reverse DNS lookup of the host (slow on some machines)."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Count and remember the accepted connection, then serve it on its own thread."""
        self.stats.connection()
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        """Forget a finished connection and close it."""
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log a connection's failure at debug level (clients that drop connections are routine here)."""
        # socketserver calls this from inside its except block, so the exception is current
        log.debug("Connection from %s failed: %r", client_address, sys.exc_info()[1])

    def close_connections(self) -> None:
        """Shut down every open connection so idle keep-alive threads end."""
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class SandboxRequestHandler(BaseHTTPRequestHandler):
    """Handles every request of one connection (HTTP/1.1 keep-alive)."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else replies on a kept-alive connection wait ~40 ms for delayed ACKs
    server_version = "TelnyxSandbox/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request stderr log (it would cost more than serving the request)."""

    def do_GET(self) -> None:
        """Serve a GET request."""
        self._dispatch()

    do_POST = do_DELETE = do_PUT = do_PATCH = do_HEAD = do_GET

    @property
    def _srv(self) -> SandboxHTTPServer:
        return cast("SandboxHTTPServer", self.server)

    def _dispatch(self) -> None:
        path, _, query = self.path.partition("?")
        try:
            if path.startswith("/v2/"):
                self._serve_api(path, query)
                return
            body = self._read_body()
            if body is not None and path.startswith("/media/"):
                authorization = self.headers.get("Authorization")
                self._send(*self._srv.media.serve(self.command, path, query, authorization))
                return
            if body is not None:
                self._send(
                    handle_control(
                        self._srv.controls, self.command, path, body, self.headers.get("Content-Type")
                    )
                )
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception:  # a sandbox bug must still yield a reply, not a hung client
            log.exception("Sandbox failed on %s %s", self.command, self.path)
            self.close_connection = True
            with contextlib.suppress(OSError):  # the connection may be gone already
                self._send(
                    error_reply(ApiError(500, CODE_UNEXPECTED, "Unexpected error", "Sandbox internal error"))
                )

    def _serve_api(self, path: str, query: str) -> None:
        srv = self._srv
        try:
            resolved = srv.api.resolve(self.command, path)
        except ApiError as error:
            if self._read_body() is not None:
                self._send(error_reply(error))
            return
        srv.stats.request(
            resolved.route_key, resolved.args[-1] if resolved.route_key in (_GET_ONE, _UPDATE_ONE) else None
        )
        call_sid = resolved.args[1] if "{call_sid}" in resolved.route_key else None
        kind, reset_after = srv.injector.decide(resolved.route_key, call_sid)
        if kind in RESET_KINDS and not reset_after:
            srv.stats.fault(kind)
            self._reset()
            return
        body = self._read_body()
        if body is None:
            return
        fault = srv.injector.error_for(kind) if kind is not None else None
        if kind is not None and kind not in RESET_KINDS:
            srv.stats.fault(kind)
            if fault is not None and kind not in ERRORS_AFTER_HANDLING:
                self._send(error_reply(fault))
                return
            if kind == "slow":  # then answer normally
                time.sleep(srv.injector.slow_seconds)
        reply = srv.api.handle(
            resolved, self.headers.get("Authorization"), query, body, self.headers.get("Content-Type")
        )
        if kind in RESET_KINDS:  # the request was carried out; its reply is lost
            srv.stats.fault(kind, after_handling=True)
            self._reset()
            return
        if kind == "slow_after":  # carried out; the reply is held (a client may die waiting for it)
            time.sleep(srv.injector.slow_seconds)
        if fault is None and reply.status == 200 and resolved.route_key in _LISTS:
            srv.stats.listed([str(item.get("sid")) for item in json.loads(reply.body).get("recordings", [])])
        self._send(error_reply(fault) if fault is not None else reply)

    def _read_body(self) -> bytes | None:
        """Read the request body; on a framing error reply 400/413, close, and return None."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked()
        raw_length = self.headers.get("Content-Length")
        if not raw_length:
            return b""
        try:
            length = int(raw_length)
            if length < 0:
                raise ValueError(raw_length)
        except ValueError:
            return self._refuse(400, f"Invalid Content-Length {raw_length!r}")
        if length > MAX_BODY:
            return self._refuse(413, f"Body larger than {MAX_BODY} bytes")
        return self.rfile.read(length) if length else b""

    def _read_chunked(self) -> bytes | None:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                return self._refuse(400, "Malformed chunked body")
            total += size
            if total > MAX_BODY:
                return self._refuse(413, f"Body larger than {MAX_BODY} bytes")
            if size == 0:
                while self.rfile.readline(1024).strip():  # trailers, up to the blank line
                    pass
                return b"".join(parts)
            parts.append(self.rfile.read(size))
            self.rfile.readline(16)

    def _refuse(self, status: int, detail: str) -> bytes | None:
        """Reply with a framing error and close the connection; returns None (no body) for the caller."""
        self.close_connection = True
        self._send(error_reply(ApiError(status, CODE_BAD_REQUEST, "Bad request", detail)))
        return None

    def _reset(self) -> None:
        """Drop the connection with a TCP reset and no reply."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        self.connection.close()  # the fd really closes (RST) when finish() closes rfile, before any FIN

    def _send(self, reply: Reply, transfer: Transfer = _AT_ONCE) -> None:
        """Write the status line, headers and body: one write for small replies, pieces for large or slow.

        :param reply: the reply.
        :param transfer: how a 200's body goes out: its framing (``length``, ``chunked``, or ``close``: an
            HTTP/1.0-style reply without any length, ended by closing the connection), whether it is cut
            halfway (then the connection is closed), and how fast.
        """
        framing = transfer.framing if reply.status == 200 else "length"
        phrase = self.responses.get(reply.status, ("",))[0]
        version = "HTTP/1.0" if framing == "close" else "HTTP/1.1"
        head = [
            f"{version} {reply.status} {phrase}",
            f"Date: {_http_date(int(self._srv.api.store.service_now()))}",
        ]
        if reply.status != 204:  # a 204 carries no body and, per RFC 9110, no Content-Length
            head.append(f"Content-Type: {reply.content_type}")
            if framing == "length":
                head.append(f"Content-Length: {len(reply.body)}")
            elif framing == "chunked":
                head.append("Transfer-Encoding: chunked")
        head.extend(f"{name}: {value}" for name, value in reply.headers.items())
        if framing == "close":
            self.close_connection = True
        if self.close_connection:
            head.append("Connection: close")
        text = "\r\n".join(head) + "\r\n\r\n"
        try:
            payload = text.encode("latin-1")
        except UnicodeEncodeError:  # a scripted Location beyond Latin-1: sent as UTF-8, as some servers do
            payload = text.encode("utf-8")
        body = b"" if self.command == "HEAD" else reply.body
        if transfer.cut:
            self.close_connection = True
            body = body[: len(body) // 2]
        rate = transfer.bytes_per_second
        if framing != "chunked" and rate is None and len(body) <= CHUNK:
            self.wfile.write(payload + body)
            return
        self.wfile.write(payload)
        piece = CHUNK if rate is None else max(1, min(CHUNK, int(rate / 20)))  # slow: ~20 writes a second
        view = memoryview(body)
        for offset in range(0, len(body), piece):
            part = view[offset : offset + piece]
            if framing == "chunked":
                self.wfile.write(b"%x\r\n" % len(part) + bytes(part) + b"\r\n")
            else:
                self.wfile.write(part)
            if rate is not None:
                time.sleep(len(part) / rate)
        if framing == "chunked" and self.command != "HEAD" and not transfer.cut:
            self.wfile.write(b"0\r\n\r\n")
