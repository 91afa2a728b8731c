"""AsyncRecordingClient: the TeXML recording endpoints over ``httpx``, for triggers.

It shares everything but the transport with :class:`~telnyx_provider.hooks.recording.RecordingHook`:
:mod:`telnyx_provider.api` builds the requests and reads the replies, :mod:`telnyx_provider.retry` decides
what is retried. Triggers in one triggerer share one client (one connection pool) per connection, so
a thousand waiting recordings do not open a thousand TCP connections.
"""

from __future__ import annotations

import asyncio
import ssl
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from airflow.sdk import BaseHook
from tenacity import AsyncRetrying

from telnyx_provider import api
from telnyx_provider.connection import TelnyxConnectionConfig, config_from_connection
from telnyx_provider.errors import TelnyxApiError, transport_detail

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from telnyx_provider.retry import RetryPolicy

T = TypeVar("T")


class AsyncRecordingClient:
    """Async access to the recording endpoints with a bounded, pooled ``httpx.AsyncClient``.

    At most ``config.pool_size`` requests are in flight at once; the others wait their turn in a
    semaphore (first come, first served) rather than in the HTTP pool, which scans its whole queue on
    every change and would make the first reply wait behind a thousand queued requests.

    :param config: the connection's settings.
    :param retry_policy: overrides the connection's retry settings.
    """

    def __init__(self, config: TelnyxConnectionConfig, retry_policy: RetryPolicy | None = None) -> None:
        self.config = config
        self.retry_policy = retry_policy or config.retry_policy()
        self._slots = asyncio.Semaphore(config.pool_size)
        self._client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=config.pool_size, max_keepalive_connections=config.pool_size),
            timeout=httpx.Timeout(config.read_timeout, connect=config.connect_timeout, pool=None),
            verify=ssl.create_default_context(cafile=config.ca_bundle) if config.ca_bundle else True,
        )

    async def get_recording(self, recording_sid: str, *, account_sid: str | None = None) -> dict[str, Any]:
        """Fetch one recording (``GET .../Recordings/{recording_sid}.json``)."""
        request = api.get_recording(self.config.resolve_account_sid(account_sid), recording_sid)
        return await self._call(request, api.parse_recording)

    async def update_call_recording(
        self, call_sid: str, recording_sid: str, status: str, *, account_sid: str | None = None
    ) -> dict[str, Any]:
        """Pause (``paused``), resume (``in-progress``) or stop (``stopped``) a recording."""
        request = api.update_call_recording(
            self.config.resolve_account_sid(account_sid), call_sid, recording_sid, status
        )
        return await self._call(request, api.parse_recording)

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._client.aclose()

    async def _call(self, request: api.ApiRequest, parse: Callable[..., T]) -> T:
        kwargs = self.retry_policy.tenacity_kwargs(f"{request.method} {request.path}")
        async for attempt in AsyncRetrying(**kwargs):
            with attempt:
                return await self._send(request, parse)
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    async def _send(self, request: api.ApiRequest, parse: Callable[..., T]) -> T:
        async with self._slots:
            try:
                response = await self._client.request(
                    request.method,
                    self.config.url(request.path),
                    params=request.query or None,
                    content=request.body(),
                    headers=request.headers(self.config.api_key),
                )
            except httpx.TransportError as error:
                raise TelnyxApiError(
                    status=None, method=request.method, path=request.path, detail=transport_detail(error)
                ) from None
        return parse(request, response.status_code, response.headers, response.content)


class _Shared:
    """One client per (event loop, connection id), counted by the triggers using it."""

    def __init__(self) -> None:
        self.clients: dict[tuple[int, str], tuple[AsyncRecordingClient, int]] = {}
        self.lock = asyncio.Lock()


_SHARED: dict[int, _Shared] = {}


@asynccontextmanager
async def shared_client(conn_id: str) -> AsyncIterator[AsyncRecordingClient]:
    """Borrow the event loop's shared client for ``conn_id``; the last borrower closes it.

    The connection is read the async way (``BaseHook.aget_connection``): the sync lookup can block or
    deadlock inside the triggerer.
    """
    loop_id = id(asyncio.get_running_loop())
    if loop_id not in _SHARED:
        _SHARED[loop_id] = _Shared()
    shared = _SHARED[loop_id]
    key = (loop_id, conn_id)
    async with shared.lock:
        if key in shared.clients:
            client, users = shared.clients[key]
        else:
            try:
                connection = await BaseHook.aget_connection(conn_id)
                client, users = AsyncRecordingClient(config_from_connection(connection)), 0
            except BaseException:
                if not shared.clients:
                    _SHARED.pop(loop_id, None)
                raise
        shared.clients[key] = (client, users + 1)
    try:
        yield client
    finally:
        async with shared.lock:
            client, users = shared.clients[key]
            if users > 1:
                shared.clients[key] = (client, users - 1)
            else:
                del shared.clients[key]
                await client.aclose()
                if not shared.clients:
                    _SHARED.pop(loop_id, None)
