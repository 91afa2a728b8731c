"""One async client per event loop and connection, shared by every trigger waiting on that connection.

A triggerer may hold a thousand waiting recordings: they share one client (one connection pool) rather than
open a thousand. A trigger borrows it for its whole wait (:class:`Lease`); the last borrower closes it.

The connection is read again when a trigger borrows the client and the last read is
:data:`CONNECTION_RECHECK_SECONDS` old or more. If its settings changed (a rotated key, a moved host, another
account, TLS settings...), new borrowers get a new client while the waits already holding the old one finish
on it; the old one is closed when its last borrower leaves.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from airflow.sdk import BaseHook

from telnyx_provider.connection import config_from_connection

if TYPE_CHECKING:
    from collections.abc import Callable

    from telnyx_provider.connection import TelnyxConnectionConfig
    from telnyx_provider.hooks.recording_async import AsyncRecordingClient

log = logging.getLogger(__name__)

#: Seconds after which the next borrower reads the connection again. Reading it costs a lookup (an API
#: call from a triggerer); a thousand triggers starting together read it once.
CONNECTION_RECHECK_SECONDS = 30.0


class _Entry:
    """A shared client (``None`` while it is being built), the number of triggers using it, and when its
    connection was last read (monotonic seconds)."""

    __slots__ = ("checked_at", "client", "error", "ready", "users")

    def __init__(self) -> None:
        self.client: AsyncRecordingClient | None = None
        self.error: BaseException | None = None
        self.ready = asyncio.Event()
        self.users = 0
        self.checked_at = time.monotonic()


#: The shared clients in use: event loop id -> connection id -> entry. An entry replaced after a connection
#: change is no longer here; its borrowers still hold it.
_SHARED: dict[int, dict[str, _Entry]] = {}


class Lease:
    """One trigger's use of the event loop's shared client for a connection (``async with``).

    No lock: an entry is registered (and counted) before its client is built, without an ``await`` in
    between, so the triggers arriving meanwhile just wait for it, and ten thousand triggers starting at once
    queue on nothing. Likewise, one borrower claims a connection re-read before awaiting it. A small object
    rather than a generator-based context manager, as a triggerer holds one per waiting recording.

    :param conn_id: the Telnyx connection.
    :param factory: builds a client from the connection's settings.
    """

    __slots__ = ("_conn_id", "_entry", "_factory", "_loop_id")

    def __init__(
        self, conn_id: str, factory: Callable[[TelnyxConnectionConfig], AsyncRecordingClient]
    ) -> None:
        self._conn_id = conn_id
        self._factory = factory
        self._loop_id = 0
        self._entry: _Entry | None = None

    async def __aenter__(self) -> AsyncRecordingClient:
        self._loop_id = id(asyncio.get_running_loop())
        checked = False  # the connection is read at most once per borrower
        while True:
            clients = _SHARED.setdefault(self._loop_id, {})
            entry = clients.get(self._conn_id)
            if entry is None:
                return await self._build(clients)
            stale = time.monotonic() - entry.checked_at >= CONNECTION_RECHECK_SECONDS
            if entry.client is not None and stale and not checked:
                checked = True
                # Claimed before awaiting: the borrowers arriving meanwhile do not read it too.
                entry.checked_at = time.monotonic()
                config = await self._read_config()
                if config != entry.client.config:
                    log.info("Connection %s changed: new waits use a new client.", self._conn_id)
                    self._unregister(entry)  # its borrowers keep it; the last one closes it
                    clients = _SHARED.setdefault(self._loop_id, {})
                    if self._conn_id not in clients:
                        return await self._build(clients, config)
                continue  # look again: another borrower may have replaced the entry meanwhile
            entry.users += 1
            self._entry = entry
            if entry.client is None:
                try:
                    await entry.ready.wait()
                finally:
                    if entry.client is None:  # cancelled while waiting, or the build failed
                        await self._release()
                if entry.client is None:
                    if isinstance(entry.error, Exception):
                        raise entry.error
                    continue  # its builder was cancelled: build it ourselves
            return entry.client

    async def _read_config(self) -> TelnyxConnectionConfig:
        # The async lookup: the sync one can block or deadlock inside the triggerer.
        return config_from_connection(await BaseHook.aget_connection(self._conn_id))

    async def _build(
        self, clients: dict[str, _Entry], config: TelnyxConnectionConfig | None = None
    ) -> AsyncRecordingClient:
        entry = clients[self._conn_id] = _Entry()
        entry.users = 1
        try:
            entry.client = self._factory(config if config is not None else await self._read_config())
        except BaseException as error:
            entry.error = error
            self._unregister(entry)  # the next trigger to arrive tries again
            raise
        finally:
            entry.ready.set()
        self._entry = entry
        return entry.client

    async def __aexit__(self, *exc_info: object) -> None:
        await self._release()

    async def _release(self) -> None:
        entry, self._entry = self._entry, None
        if entry is None:
            return
        entry.users -= 1
        if entry.users == 0:
            self._unregister(entry)
            if entry.client is not None:
                await entry.client.aclose()

    def _unregister(self, entry: _Entry) -> None:
        clients = _SHARED.get(self._loop_id)
        if clients is not None and clients.get(self._conn_id) is entry:
            del clients[self._conn_id]
            if not clients:
                del _SHARED[self._loop_id]
