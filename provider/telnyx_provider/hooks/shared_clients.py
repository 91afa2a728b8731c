"""One async client per event loop and connection settings, shared by every trigger that uses them.

A triggerer may hold a thousand waiting recordings: they share one client (one connection pool) rather than
open a thousand. A trigger borrows it for its whole wait (:class:`Lease`); the last borrower closes it.

Clients are keyed by what the connection says (its
:class:`~telnyx_provider.connection.TelnyxConnectionConfig`: base URL, key, account, TLS, timeouts and retry
settings), never by its id alone. Every borrower reads the
connection when it arrives (:func:`read_connection`), so a wait that starts after the connection changed (a
rotated key, a moved host, another account...) uses the changed settings, while the waits already holding
the old client may finish on it; the old client is closed when its last borrower leaves.

Reading the connection costs a lookup (an API call from a triggerer), so the reads of one connection are
pooled: a borrower arriving while a read is under way waits for the next read, started as soon as that one
ends. Every borrower gets settings read after it arrived, and a thousand triggers starting together cost two
lookups, not a thousand.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from airflow.sdk import BaseHook

from telnyx_provider.connection import config_from_connection

if TYPE_CHECKING:
    from collections.abc import Callable

    from telnyx_provider.connection import TelnyxConnectionConfig
    from telnyx_provider.hooks.recording_async import AsyncRecordingClient

log = logging.getLogger(__name__)


class _Entry:
    """A shared client and the number of triggers using it."""

    __slots__ = ("client", "users")

    def __init__(self, client: AsyncRecordingClient) -> None:
        self.client = client
        self.users = 0


#: The shared clients in use: event loop id -> connection settings -> entry.
_SHARED: dict[int, dict[TelnyxConnectionConfig, _Entry]] = {}


class _Reads:
    """The read of a connection under way, and the one queued behind it (for borrowers arriving meanwhile)."""

    __slots__ = ("queued", "running", "task")

    def __init__(self) -> None:
        self.running: asyncio.Future[TelnyxConnectionConfig] | None = None
        self.queued: asyncio.Future[TelnyxConnectionConfig] | None = None
        self.task: asyncio.Task[None] | None = None


#: Connection reads under way: (event loop id, connection id) -> reads.
_READS: dict[tuple[int, str], _Reads] = {}


async def read_connection(conn_id: str) -> TelnyxConnectionConfig:
    """The connection's settings, read after this call began (reads of one connection are pooled).

    The async lookup (``BaseHook.aget_connection``): the sync one can block or deadlock in the triggerer.

    :param conn_id: the Telnyx connection.
    """
    loop = asyncio.get_running_loop()
    key = (id(loop), conn_id)
    reads = _READS.get(key)
    if reads is None:
        reads = _READS[key] = _Reads()
    if reads.running is None:
        future = reads.running = _start_read(loop, key, reads, conn_id)
    else:  # the read under way may have begun before a change this caller must see: take the next one
        if reads.queued is None:
            reads.queued = loop.create_future()
            reads.queued.add_done_callback(_retrieve)
        future = reads.queued
    return await asyncio.shield(future)


def _start_read(
    loop: asyncio.AbstractEventLoop,
    key: tuple[int, str],
    reads: _Reads,
    conn_id: str,
    future: asyncio.Future[TelnyxConnectionConfig] | None = None,
) -> asyncio.Future[TelnyxConnectionConfig]:
    if future is None:
        future = loop.create_future()
        future.add_done_callback(_retrieve)
    reads.running = future
    reads.task = loop.create_task(_read(key, reads, conn_id, future))
    return future


async def _read(
    key: tuple[int, str], reads: _Reads, conn_id: str, future: asyncio.Future[TelnyxConnectionConfig]
) -> None:
    try:
        config = config_from_connection(await BaseHook.aget_connection(conn_id))
    except asyncio.CancelledError:  # the event loop is closing
        future.cancel()
        raise
    except Exception as error:  # every borrower waiting for this read gets the error
        if not future.done():
            future.set_exception(error)
    else:
        if not future.done():
            future.set_result(config)
    finally:
        queued, reads.queued = reads.queued, None
        if queued is not None:
            _start_read(asyncio.get_running_loop(), key, reads, conn_id, queued)
        else:
            reads.running = reads.task = None
            if _READS.get(key) is reads:
                del _READS[key]


def _retrieve(future: asyncio.Future[TelnyxConnectionConfig]) -> None:
    """Mark a failed read's error as seen: its borrowers may all have been cancelled meanwhile."""
    if not future.cancelled():
        future.exception()


class Lease:
    """One trigger's use of the event loop's shared client for a connection's settings (``async with``).

    Entering reads the connection (see :func:`read_connection`) and borrows the client of those settings,
    building it if none is in use; a client is built without an ``await`` after its settings are known, so
    no lock is needed. A small object rather than a generator-based context manager, as a triggerer holds
    one per waiting recording.

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
        config = await read_connection(self._conn_id)
        self._loop_id = id(asyncio.get_running_loop())
        clients = _SHARED.setdefault(self._loop_id, {})
        entry = clients.get(config)
        if entry is None:
            entry = _Entry(self._factory(config))
            clients[config] = entry
            if any(other.conn_id == config.conn_id for other in clients if other is not config):
                log.info("Connection %s changed: new waits use a new client.", self._conn_id)
        entry.users += 1
        self._entry = entry
        return entry.client

    async def __aexit__(self, *exc_info: object) -> None:
        entry, self._entry = self._entry, None
        if entry is None:
            return
        entry.users -= 1
        if entry.users == 0:
            clients = _SHARED.get(self._loop_id)
            if clients is not None and clients.get(entry.client.config) is entry:
                del clients[entry.client.config]
                if not clients:
                    del _SHARED[self._loop_id]
            await entry.client.aclose()
