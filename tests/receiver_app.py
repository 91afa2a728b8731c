"""The real status-callback receiver, mounted at ``/telnyx`` on uvicorn on loopback, for exact starts.

Its shared store is the provider's own ``ReceiverStore`` on a SQLite file (in production: Airflow's
metadata database); two servers given the same store play two API-server workers.
"""

from __future__ import annotations

import asyncio
import socket
import tempfile
import threading
import time
from typing import Any


def sqlite_store(path: str | None = None) -> Any:
    """The provider's real ``ReceiverStore`` on a SQLite file: what several API-server workers share."""
    from sqlalchemy import create_engine

    from telnyx_provider.plugins.receiver_store import ReceiverStore

    if path is None:
        path = tempfile.mkstemp(prefix="telnyx-receiver-", suffix=".db")[1]
    return ReceiverStore(create_engine(f"sqlite:///{path}"))


class ReceiverServer:
    """The receiver app (``create_app``) under ``/telnyx`` on a free loopback port, in a thread.

    Public keys come from the Airflow connection named in each callback URL (as in production).
    """

    def __init__(self, store: Any = None) -> None:
        import uvicorn
        from fastapi import FastAPI

        from telnyx_provider.plugins.callbacks import ReceiverSettings, create_app

        self.store = store if store is not None else sqlite_store()
        root = FastAPI()
        root.mount("/telnyx", create_app(ReceiverSettings(store=self.store)))
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
