"""Fixtures for the reliability tests: sandboxes with chosen faults, a watcher that flips them, and a
loopback server with one scripted reply (for the async client, whatever its HTTP library)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from telnyx_provider.sandbox import Sandbox


@pytest.fixture
def faulty_sandbox(monkeypatch: pytest.MonkeyPatch, date_format: str) -> Iterator[Callable[..., Sandbox]]:
    """``make(extra=None, **Sandbox kwargs)``: a running sandbox that ``telnyx_default`` points at.

    ``extra`` becomes the connection's extra (timeouts, retry settings). Every sandbox is stopped at the end.
    Its dates are in ``date_format`` (``tests/conftest.py``): mark a test or module ``both_date_formats``
    to run it on RFC 2822 and ISO 8601 dates.
    """
    from telnyx_provider.sandbox import Sandbox

    started: list[Sandbox] = []

    def make(extra: dict[str, Any] | None = None, **kwargs: Any) -> Sandbox:
        kwargs.setdefault("processing_delay", 0.1)
        kwargs.setdefault("date_format", date_format)
        sandbox = Sandbox(port=0, **kwargs).start()
        started.append(sandbox)
        conn = json.loads(sandbox.airflow_conn_json())
        if extra:
            conn["extra"] = json.dumps(extra)
        monkeypatch.setenv("AIRFLOW_CONN_TELNYX_DEFAULT", json.dumps(conn))
        return sandbox

    yield make
    for sandbox in started:
        sandbox.stop()


class Watcher:
    """Runs ``action`` once, as soon as ``condition()`` holds (polled every few milliseconds)."""

    def __init__(
        self, condition: Callable[[], bool], action: Callable[[], None], limit: float = 20.0
    ) -> None:
        self.fired = threading.Event()
        self._stop = threading.Event()

        def watch() -> None:
            deadline = time.monotonic() + limit
            while not self._stop.is_set() and time.monotonic() < deadline:
                if condition():
                    action()
                    self.fired.set()
                    return
                time.sleep(0.002)

        self._thread = threading.Thread(target=watch, name="fault-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture
def when() -> Iterator[Callable[[Callable[[], bool], Callable[[], None]], Watcher]]:
    """``when(condition, action)``: run ``action`` once ``condition()`` is true, on a background thread."""
    watchers: list[Watcher] = []

    def make(condition: Callable[[], bool], action: Callable[[], None]) -> Watcher:
        watcher = Watcher(condition, action)
        watchers.append(watcher)
        return watcher

    yield make
    for watcher in watchers:
        watcher.stop()


class ReplyServer:
    """A loopback HTTP server giving every request the same scripted reply (any client library can use it).

    Set ``status``, ``body`` (bytes), ``headers`` and ``delay`` (seconds before replying); ``seen`` holds the
    ``(method, path, headers)`` of each request received.
    """

    def __init__(self) -> None:
        self.status, self.body, self.headers, self.delay = 200, b"{}", {}, 0.0
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                server.seen.append((self.command, self.path, dict(self.headers)))
                if server.delay:
                    time.sleep(server.delay)
                try:
                    self.send_response(server.status)
                    for name, value in server.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(server.body)))
                    self.end_headers()
                    self.wfile.write(server.body)
                except OSError:
                    self.close_connection = True  # the client gave up waiting

            do_POST = do_DELETE = do_GET

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v2"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def reply(self, status: int, body: bytes | str | dict[str, Any], **headers: str) -> None:
        self.status = status
        self.body = (
            json.dumps(body).encode()
            if isinstance(body, dict)
            else body
            if isinstance(body, bytes)
            else body.encode()
        )
        self.headers = headers

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)


@pytest.fixture
def reply_server() -> Iterator[ReplyServer]:
    """A running :class:`ReplyServer`."""
    server = ReplyServer()
    yield server
    server.stop()


@pytest.fixture
def receiver() -> Iterator[Any]:
    """The real status-callback receiver on loopback (``.callback_url``, ``.store``): exact starts use it."""
    from tests.receiver_app import ReceiverServer

    server = ReceiverServer().start()
    yield server
    server.stop()


def started_on(sandbox: Sandbox, call_sid: str) -> dict[str, str]:
    """recording sid -> track, as the sandbox started them (the service's side: replies carry no track)."""
    return {item["sid"]: item["track"] for item in sandbox.started_on(call_sid)}


@pytest.fixture
def task_states(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Airflow's answer to a task-state query, the triggerer's or a killed task's (``["state"]``, or
    ``["error"]`` raised); ``["queries"]`` records them."""
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    answer: dict[str, Any] = {"state": "failed", "queries": [], "error": None}

    def get_task_states(dag_id: str, map_index: int | None = None, task_ids: Any = None,
                        task_group_id: Any = None, logical_dates: Any = None,
                        run_ids: Any = None) -> dict[str, Any]:  # fmt: skip
        answer["queries"].append({"dag_id": dag_id, "map_index": map_index, "task_ids": task_ids})
        if answer["error"] is not None:
            raise answer["error"]
        key = task_ids[0] if map_index is None or map_index < 0 else f"{task_ids[0]}_{map_index}"
        return {run_ids[0]: {key: answer["state"]}}

    monkeypatch.setattr(RuntimeTaskInstance, "get_task_states", staticmethod(get_task_states))
    return answer
