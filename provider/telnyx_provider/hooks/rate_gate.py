"""RateGate: one client's requests wait together when Telnyx says the account is over its rate limit.

A 429 (or a reply saying no request is left, ``x-ratelimit-remaining: 0``) closes the gate for as long as the
service asked (``Retry-After``, in seconds or as an HTTP date, else ``x-ratelimit-reset``; one second when it
said nothing). Every request of the client waits at the gate, not only the one that was refused: a thousand
waits sharing a client slow down together instead of each learning of the limit from its own 429. When the
gate opens again, one request goes first (the probe); the others follow once its reply came and did not
close the gate again, so the end of a limit is not met by every waiting request at once.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from telnyx_provider.errors import TelnyxApiError
from telnyx_provider.retry import requested_wait

if TYPE_CHECKING:
    from collections.abc import Mapping

#: Seconds the gate stays closed after a 429 that did not say how long to wait.
DEFAULT_CLOSE_SECONDS = 1.0


class RateGate:
    """Holds a client's requests while the service asked to wait (see the module docstring)."""

    __slots__ = ("_open_at", "_probe", "_probe_needed")

    def __init__(self) -> None:
        self._open_at = 0.0  # monotonic time the gate opens
        self._probe: asyncio.Future[None] | None = None  # the probe's reply, while it is under way
        self._probe_needed = False

    def closed_for(self) -> float:
        """Seconds until the gate opens (0.0 when open)."""
        return max(0.0, self._open_at - time.monotonic())

    async def enter(self, limit: float | None = None) -> bool:
        """Wait until a request may be sent; ``True`` when it is the probe (it must call :meth:`leave`).

        :param limit: monotonic time after which the request gives up instead of waiting longer.
        :raises GateClosed: the gate stays closed past ``limit``.
        """
        while True:
            closed = self.closed_for()
            if closed > 0:
                if limit is not None and time.monotonic() + closed > limit:
                    raise GateClosed(closed)
                await asyncio.sleep(closed)
                continue
            if self._probe is not None:  # the probe's reply tells whether the limit is over
                await asyncio.shield(self._probe)
                continue
            if self._probe_needed:
                self._probe_needed = False
                self._probe = asyncio.get_running_loop().create_future()
                return True
            return False

    def leave(self, probe: bool) -> None:
        """A request got its reply (or none): a probe lets the requests behind it go."""
        if probe and self._probe is not None:
            probe_future, self._probe = self._probe, None
            if not probe_future.done():
                probe_future.set_result(None)

    def observe(self, status: int, headers: Mapping[str, str]) -> None:
        """Read a reply: a 429, or no request left, closes the gate for what the service asked."""
        lowered = {name.lower(): value for name, value in headers.items()}
        if status != 429 and lowered.get("x-ratelimit-remaining", "").strip() != "0":
            return
        asked = requested_wait(TelnyxApiError(status=status, method="", path="", headers=lowered))
        if asked is None:
            if status != 429:
                return  # no request left, but no word on when: the next 429 will say
            asked = DEFAULT_CLOSE_SECONDS
        self._open_at = max(self._open_at, time.monotonic() + asked)
        self._probe_needed = True


class GateClosed(Exception):
    """The gate stays closed longer than the request may wait.

    :param seconds: how long it stays closed.
    """

    def __init__(self, seconds: float) -> None:
        super().__init__(f"the service asked this connection's requests to wait {seconds:.1f} s more")
        self.seconds = seconds
