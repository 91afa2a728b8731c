"""A wait's place in a shared poll (:mod:`telnyx_provider.triggers.shared_polls`): the outcome of each look
at its recording, handed over one at a time."""

from __future__ import annotations

import asyncio
import time
from typing import Any, TypeAlias

#: What a look gives a wait: the recording, or the error of the request that looked for it.
Outcome: TypeAlias = dict[str, Any] | BaseException


class Waiter:
    """One wait's place in a shared poll: the outcome of each look at its recording, one at a time.

    :param sid: the recording.
    :param deadline: Unix time the wait ends (``None``: never).
    :param registered: the event loop's time it joined.
    """

    __slots__ = ("_future", "_outcome", "deadline", "in_flight", "joined", "registered", "sid")

    def __init__(self, sid: str, deadline: float | None, registered: float) -> None:
        self.sid = sid
        self.deadline = deadline
        self.registered = registered
        self.joined = time.time()
        self.in_flight = False  # a GET for its recording is under way
        self._future: asyncio.Future[Outcome] | None = None
        self._outcome: Outcome | None = None

    def deliver(self, outcome: Outcome) -> None:
        """Hand the wait the outcome of a look (kept until it asks, if it is not waiting for one)."""
        self.in_flight = False
        future = self._future
        if future is not None and not future.done():
            future.set_result(outcome)
        else:
            self._outcome = outcome

    async def next(self) -> Outcome | None:
        """The next look's outcome, or ``None`` at the deadline; a GET under way at the deadline is waited
        for (its retry budget is capped at the deadline), as a wait of its own would."""
        if self._outcome is not None:
            outcome, self._outcome = self._outcome, None
            return outcome
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._future = future
        try:
            if self.deadline is None:
                return await future
            left = self.deadline - time.time()
            if left > 0:
                await asyncio.wait((future,), timeout=left)
            if not future.done() and self.in_flight:
                return await future
            return future.result() if future.done() else None
        finally:
            self._future = None
