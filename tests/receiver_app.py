"""The real status-callback receiver, mounted at ``/telnyx`` on uvicorn on loopback, for exact starts.

Its shared store is :class:`MemoryReceiverStore`, a one-process stand-in for the metadata-database
``ReceiverStore`` (``telnyx_provider.plugins.receiver_store``) with the same interface: values are copied
in and out, keys expire.
"""

from __future__ import annotations

import asyncio
import copy
import socket
import threading
import time
from typing import Any


class MemoryReceiverStore:
    """``add_if_absent``/``get``/``list_prefix``/``purge_expired`` in memory, thread-safe, copying values."""

    def __init__(self) -> None:
        self._values: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def add_if_absent(self, namespace: str, key: str, value: dict[str, Any], ttl_seconds: float) -> bool:
        with self._lock:
            now = time.time()
            held = self._values.get((namespace, key))
            if held is not None and held[0] > now:
                return False
            self._values[(namespace, key)] = (now + ttl_seconds, copy.deepcopy(value))
            return True

    def get(self, namespace: str, key: str) -> dict[str, Any] | None:
        with self._lock:
            held = self._values.get((namespace, key))
            return copy.deepcopy(held[1]) if held is not None and held[0] > time.time() else None

    def list_prefix(self, namespace: str, prefix: str) -> list[tuple[str, dict[str, Any]]]:
        with self._lock:
            now = time.time()
            return sorted(
                (key, copy.deepcopy(value))
                for (space, key), (expires, value) in self._values.items()
                if space == namespace and key.startswith(prefix) and expires > now
            )

    def purge_expired(self) -> int:
        with self._lock:
            now = time.time()
            expired = [name for name, (expires, _) in self._values.items() if expires <= now]
            for name in expired:
                del self._values[name]
            return len(expired)


class ReceiverServer:
    """The receiver app (``create_app``) under ``/telnyx`` on a free loopback port, in a thread.

    Public keys come from the Airflow connection named in each callback URL (as in production).
    """

    def __init__(self, store: MemoryReceiverStore | None = None) -> None:
        import uvicorn
        from fastapi import FastAPI

        from telnyx_provider.plugins.callbacks import ReceiverSettings, create_app

        self.store = store or MemoryReceiverStore()
        root = FastAPI()
        root.mount("/telnyx", create_app(ReceiverSettings(start_sightings=lambda: self.store)))
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._server = uvicorn.Server(uvicorn.Config(root, log_level="warning", lifespan="off"))
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._server.serve(sockets=[self._sock])), daemon=True
        )

    @property
    def callback_url(self) -> str:
        """The URL to give as ``recording_status_callback``."""
        return f"http://127.0.0.1:{self.port}/telnyx/recording-status"

    def start(self) -> ReceiverServer:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._sock.close()
