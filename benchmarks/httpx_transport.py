"""An httpx variant of the async client's transport, for the benchmark only (it is not shipped).

The issue asks for httpx (which Airflow brings) unless the benchmark shows it cannot meet the CPU target
and aiohttp can. The shipped client moves its bytes with aiohttp; this swaps only that object
(``AsyncRecordingClient._client``) for the best httpx transport we found (one single-connection
``AsyncHTTPTransport`` per slot, FIFO semaphore in front, requests built once a slot is free), with the
same ``exchange(request, config)`` contract: the retry policy, request building and reply parsing stay the
shipped ones, so the figures compare the libraries.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import TYPE_CHECKING, Any

import httpx

from telnyx_provider.errors import TelnyxApiError, transport_detail
from telnyx_provider.hooks import recording_async
from telnyx_provider.hooks.rate_gate import RateGate

if TYPE_CHECKING:
    from telnyx_provider.api import ApiRequest
    from telnyx_provider.connection import TelnyxConnectionConfig


class HttpxSlots:
    """``size`` single-connection httpx transports, lent first come first served."""

    def __init__(self, config: TelnyxConnectionConfig) -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        verify = ssl.create_default_context(cafile=config.ca_bundle)
        self._idle = [httpx.AsyncHTTPTransport(verify=verify, limits=limits) for _ in range(config.pool_size)]
        self._all = list(self._idle)
        self._free = asyncio.Semaphore(config.pool_size)
        timeout = httpx.Timeout(config.read_timeout, connect=config.connect_timeout, pool=None)
        self._extensions = {"timeout": timeout.as_dict()}
        self.is_closed = False

    async def exchange(
        self,
        request: ApiRequest,
        config: TelnyxConnectionConfig,
        gate: RateGate | None = None,
        limit: float | None = None,
    ) -> tuple[int, Any, bytes]:
        async with self._free:
            probe = await gate.enter(limit) if gate is not None else False
            try:
                status, headers, body = await self._send(request, config)
                if gate is not None:
                    gate.observe(status, headers)
            finally:
                if gate is not None:
                    gate.leave(probe)
        return status, headers, body

    async def _send(self, request: ApiRequest, config: TelnyxConnectionConfig) -> tuple[int, Any, bytes]:
        outgoing = httpx.Request(
            request.method,
            config.url(request.path),
            params=request.query or None,
            headers=request.headers(config.api_key),
            content=request.body(),
            extensions=self._extensions,
        )
        transport = self._idle.pop()
        try:
            response = await transport.handle_async_request(outgoing)
            try:
                body = await response.aread()
            finally:
                await response.aclose()
        except httpx.TransportError as error:
            raise TelnyxApiError(
                status=None, method=request.method, path=request.path, detail=transport_detail(error)
            ) from None
        finally:
            self._idle.append(transport)
        return response.status_code, response.headers, body

    async def aclose(self) -> None:
        self.is_closed = True
        for transport in self._all:
            await transport.aclose()


class HttpxRecordingClient(recording_async.AsyncRecordingClient):
    """The shipped client, moving its bytes with httpx."""

    def __init__(self, config: TelnyxConnectionConfig, retry_policy: Any = None) -> None:
        self.config = config
        self.retry_policy = retry_policy or config.retry_policy()
        self.rate_gate = RateGate()
        self._client = HttpxSlots(config)  # type: ignore[assignment]


def install() -> None:
    """Make ``shared_client`` build the httpx variant."""
    recording_async.AsyncRecordingClient = HttpxRecordingClient  # type: ignore[misc]
