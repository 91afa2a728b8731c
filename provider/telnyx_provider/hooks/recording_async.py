"""AsyncRecordingClient: the TeXML recording endpoints over ``aiohttp``, for triggers.

It shares everything but the transport with :class:`~telnyx_provider.hooks.recording.RecordingHook`:
:mod:`telnyx_provider.api` builds the requests and reads the replies, :mod:`telnyx_provider.retry` decides
what is retried. Triggers in one triggerer share one client (one connection pool) per connection, so
a thousand waiting recordings do not open a thousand TCP connections.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
import yarl
from tenacity import AsyncRetrying

from telnyx_provider import api
from telnyx_provider.errors import TelnyxApiError, transport_detail
from telnyx_provider.hooks.rate_gate import GateClosed, RateGate
from telnyx_provider.hooks.shared_clients import Lease
from telnyx_provider.pages import PageGuard
from telnyx_provider.retry import is_retryable

if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable, Mapping
    from contextlib import AbstractAsyncContextManager
    from datetime import datetime

    from telnyx_provider.connection import TelnyxConnectionConfig
    from telnyx_provider.retry import RetryPolicy

T = TypeVar("T")


class ConnectionSlots:
    """``size`` keep-alive connections of one ``aiohttp`` session, lent first come first served.

    At most ``size`` requests are in flight; the others wait in a FIFO semaphore, holding nothing but their
    place, so the first of a burst of a thousand is on the wire at once rather than behind the queue.
    aiohttp rather than httpx: on the benchmark of 1,000 waiting recordings (``benchmarks/RESULTS.md``) httpx
    costs 0.70 ms of CPU per poll, over the 0.5 ms target, and aiohttp 0.28 ms.

    :param size: number of connections (and of requests in flight).
    :param connect_timeout: seconds to open a connection.
    :param read_timeout: seconds to wait for a reply.
    :param ssl_context: the TLS context (verification always on).
    :param proxy: the proxy URL to go through, or ``None``.
    """

    def __init__(
        self,
        size: int,
        *,
        connect_timeout: float,
        read_timeout: float,
        ssl_context: ssl.SSLContext,
        proxy: str | None = None,
    ) -> None:
        self._free = asyncio.Semaphore(size)
        self._proxy = proxy
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=size, ssl=ssl_context),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout, sock_read=read_timeout),
            # Not trust_env: it reads ~/.netrc (whose credentials clash with our bearer header) and looks the
            # proxy up again in a thread on every request, which more than doubled the CPU of a poll. The
            # proxy is looked up once instead (environment_proxy).
            trust_env=False,
            skip_auto_headers=("User-Agent",),  # ours comes with every request
            middlewares=(no_silent_resend,),
        )

    @property
    def is_closed(self) -> bool:
        """Whether :meth:`aclose` was called."""
        return bool(self._session.closed)

    async def exchange(
        self,
        request: api.ApiRequest,
        config: TelnyxConnectionConfig,
        gate: RateGate | None = None,
        limit: float | None = None,
    ) -> tuple[int, Mapping[str, str], bytes]:
        """Send one request on the next free connection; returns the reply's status, headers and body.

        :param gate: the client's rate gate, passed once a connection is free (the requests queued for one
            must not slip through while a reply closes it).
        :param limit: monotonic time after which the request gives up waiting at the gate.
        :raises TelnyxApiError: no usable reply (refused, reset, timed out...), with ``status`` ``None``;
            or not sent, the gate being closed past ``limit``.
        """
        async with self._free:
            probe = False
            if gate is not None:
                try:
                    probe = await gate.enter(limit)
                except GateClosed as closed:
                    raise api.not_sent(request, closed.seconds) from None
            try:
                async with self._session.request(
                    request.method,
                    # Already percent-encoded by the core: yarl must not decode v3%3A... back to v3:...
                    yarl.URL(config.url(request.path), encoded=True),
                    params=request.query or None,
                    data=request.body(),
                    headers=request.headers(config.api_key),
                    allow_redirects=False,
                    proxy=self._proxy,
                ) as response:
                    if gate is not None:
                        gate.observe(response.status, response.headers)
                    return response.status, response.headers, await response.read()
            except Disconnected as error:  # reset or closed under the request, kept from aiohttp's re-send
                failure, detail = "connection", transport_detail(error.cause)
            except aiohttp.ClientConnectorCertificateError as error:
                failure, detail = "tls", transport_detail(error)
            except aiohttp.ClientConnectorError as error:  # refused, unresolvable: nothing was sent
                failure, detail = "connect", transport_detail(error)
            except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as error:
                failure, detail = "timeout", transport_detail(error)
            except aiohttp.ClientError as error:  # reset, disconnected, broken payload
                failure, detail = "connection", transport_detail(error)
            finally:
                if gate is not None:
                    gate.leave(probe)
        raise api.no_reply(request, failure, detail) from None

    async def aclose(self) -> None:
        """Close every connection."""
        await self._session.close()


class Disconnected(Exception):
    """The connection was reset or closed under a request; raised by :func:`no_silent_resend`.

    :param cause: aiohttp's own error.
    """

    def __init__(self, cause: aiohttp.ClientError) -> None:
        super().__init__(str(cause))
        self.cause = cause


async def no_silent_resend(
    request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
) -> aiohttp.ClientResponse:
    """aiohttp client middleware: a reset or closed connection comes back to us, never re-sent by aiohttp.

    From 3.10, aiohttp silently sends an idempotent request once more when its connection was reset or
    closed under it, and offers no public switch for it (only a private attribute). Every retry must go
    through the shared policy (counted, logged once, budgeted), so the failure leaves aiohttp's retry loop
    as :class:`Disconnected`, which it does not re-send. A failure to connect passes as is: nothing was
    sent, and aiohttp does not re-send it either.
    """
    try:
        return await handler(request)
    except aiohttp.ClientConnectorError:
        raise
    except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError) as error:
        raise Disconnected(error) from error


def environment_proxy(url: str) -> str | None:
    """The proxy the environment asks for to reach ``url`` (``HTTPS_PROXY``... minus ``NO_PROXY``), if any.

    The same variables the sync hook's ``requests`` reads.
    """
    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


class AsyncRecordingClient:
    """Async access to the recording endpoints over a bounded set of pooled ``aiohttp`` connections.

    At most ``config.pool_size`` requests are in flight at once, each on its own keep-alive connection;
    the others wait their turn, first come first served (see :class:`ConnectionSlots`).

    :param config: the connection's settings.
    :param retry_policy: overrides the connection's retry settings.
    """

    def __init__(self, config: TelnyxConnectionConfig, retry_policy: RetryPolicy | None = None) -> None:
        self.config = config
        self.retry_policy = retry_policy or config.retry_policy()
        #: Shared by every request of this client: a 429 holds them all
        #: (see :mod:`telnyx_provider.hooks.rate_gate`).
        self.rate_gate = RateGate()
        self._client = ConnectionSlots(
            config.pool_size,
            connect_timeout=config.connect_timeout,
            read_timeout=config.read_timeout,
            ssl_context=config.ssl_context(),
            proxy=environment_proxy(config.base_url),
        )

    async def get_recording(
        self, recording_sid: str, *, account_sid: str | None = None, retry_policy: RetryPolicy | None = None
    ) -> dict[str, Any]:
        """Fetch one recording (``GET .../Recordings/{recording_sid}.json``).

        :param retry_policy: retries of this request (default: the client's).
        """
        request = api.get_recording(self.config.resolve_account_sid(account_sid), recording_sid)
        return await self._call(request, api.parse_recording, retry_policy)

    async def update_call_recording(
        self,
        call_sid: str,
        recording_sid: str,
        status: str,
        *,
        account_sid: str | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> dict[str, Any]:
        """Pause (``paused``), resume (``in-progress``) or stop (``stopped``) a recording.

        :param retry_policy: retries of this request (default: the client's).
        """
        request = api.update_call_recording(
            self.config.resolve_account_sid(account_sid), call_sid, recording_sid, status
        )
        return await self._call(request, api.parse_recording, retry_policy)

    async def stop_call_recording(
        self,
        call_sid: str,
        recording_sid: str,
        *,
        account_sid: str | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> dict[str, Any]:
        """Stop a recording (``Status=stopped``).

        :param retry_policy: retries of this request (default: the client's).
        """
        return await self.update_call_recording(
            call_sid, recording_sid, "stopped", account_sid=account_sid, retry_policy=retry_policy
        )

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._client.aclose()

    async def _call(
        self, request: api.ApiRequest, parse: Callable[..., T], policy: RetryPolicy | None = None
    ) -> T:
        policy = policy or self.retry_policy
        # Almost every request succeeds at once: it is sent plainly, and the retry machinery is entered only
        # after a failure the policy retries. Tenacity builds a retry state, a future with its own lock and
        # closures for each call, which refer to one another: ~5 kB a request that only the cyclic garbage
        # collector frees, and a thousand waits polling kept ~6 MB of it alive (benchmarks/RESULTS.md).
        started = time.monotonic()
        limit = started + policy.budget  # no request waits at the rate gate past its retry budget
        try:
            return await self._send(request, parse, limit)
        except TelnyxApiError as error:
            if not is_retryable(error):
                raise
            first_failure: TelnyxApiError | None = error
        async for attempt in AsyncRetrying(**policy.tenacity_kwargs(f"{request.method} {request.path}")):
            with attempt:
                if first_failure is not None:
                    # The failure is replayed as tenacity's first attempt, so the policy (attempts, waits,
                    # log lines, the budget counted from the first try) is exactly the sync hook's.
                    attempt.retry_state.start_time = started
                    failure, first_failure = first_failure, None
                    raise failure
                return await self._send(request, parse, limit)
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    async def _send(self, request: api.ApiRequest, parse: Callable[..., T], limit: float | None = None) -> T:
        reply = await self._client.exchange(request, self.config, self.rate_gate, limit)
        return api.read_reply(parse, request, *reply, api_key=self.config.api_key)

    async def list_recordings_page(
        self,
        date_created_after: datetime,
        *,
        page: int = 0,
        page_size: int | None = None,
        date_created_before: datetime | None = None,
        account_sid: str | None = None,
        retry_policy: RetryPolicy | None = None,
        guard: PageGuard | None = None,
        recheck_since: bool = True,
    ) -> tuple[list[dict[str, Any]], bool]:
        """One page of the account's recordings created at or after ``date_created_after``
        (``GET .../Recordings.json?DateCreated>=...``), read as
        :meth:`~telnyx_provider.hooks.recording.RecordingHook.iter_recordings` reads it: the recordings (the
        filters checked again on each) and whether another page follows.

        :param date_created_before: also only those created strictly before this moment (``DateCreated<=``,
            the bound itself dropped on our side).
        :param retry_policy: retries of this request (default: the client's).
        :param guard: the listing's :class:`~telnyx_provider.pages.PageGuard`: a page repeating the one
            before it raises :class:`~telnyx_provider.errors.TelnyxApiError` (status 200).
        :param recheck_since: drop, on our side too, recordings created before ``date_created_after`` (an
            exact bound: with a fraction of a second, the recordings of that second are dropped).
        """
        account = self.config.resolve_account_sid(account_sid)
        request = api.list_recordings(
            account,
            page=page,
            page_size=page_size,
            date_created_after=date_created_after,
            date_created_before=date_created_before,
        )
        reply = await self._call(request, api.parse_recording_page, retry_policy)
        guard = guard or PageGuard("recordings")
        guard.check(request, reply)
        since = api.created_since(date_created_after) if recheck_since else None
        before = None if date_created_before is None else api.created_before(date_created_before)
        kept = [
            item
            for item in reply["recordings"]
            if (since is None or since(item)) and (before is None or before(item))
        ]
        return kept, guard.has_next(request, reply)

    async def list_recordings_created_since(
        self,
        date_created_after: datetime,
        *,
        account_sid: str | None = None,
        page_size: int | None = None,
        date_created_before: datetime | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> list[dict[str, Any]]:
        """Every recording of the account created at or after ``date_created_after``, all pages read.

        One request per page (``GET .../Recordings.json?DateCreated>=...``); a failed page is retried by the
        client's policy, and fails the whole listing if it still fails. A page that repeats the one before
        it (the same page number or the same recordings) fails it too, rather than another request. The
        lower bound is the service's (cut to the second): what the polling event trigger's feed expects.

        :param date_created_before: also only those created strictly before this moment (``DateCreated<=``,
            the bound itself dropped on our side).
        :param retry_policy: retries of each page (default: the client's).
        """
        guard = PageGuard("recordings")
        recordings: list[dict[str, Any]] = []
        page = 0
        while True:
            found, more = await self.list_recordings_page(
                date_created_after,
                page=page,
                page_size=page_size,
                date_created_before=date_created_before,
                account_sid=account_sid,
                retry_policy=retry_policy,
                guard=guard,
                recheck_since=False,
            )
            recordings.extend(found)
            if not more:
                return recordings
            page += 1


def shared_client(conn_id: str) -> AbstractAsyncContextManager[AsyncRecordingClient]:
    """Borrow the event loop's shared client for ``conn_id``'s settings (``async with``); the last borrower
    closes it.

    The connection is read the async way (``BaseHook.aget_connection``) each time a client is borrowed (reads
    of one connection are pooled), and clients are keyed by the settings read (key, host, account, TLS...):
    a borrower arriving after a change gets a client with the new settings, while the waits already holding
    the old one finish on it. See :mod:`telnyx_provider.hooks.shared_clients`.
    """
    return Lease(conn_id, AsyncRecordingClient)
