"""When a shared poll's rounds come, on an event loop whose clock is virtual: no timing on a loaded machine.

The loop's clock moves only when the loop has nothing to do but wait (to the next timer), or when a test says
a callback ran for a while (a busy loop). The client is the real one; only its transport is replaced, by one
that answers a listing with the sandbox's own page envelope after a set time on that clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import selectors
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Any

from telnyx_provider.connection import TelnyxConnectionConfig
from telnyx_provider.hooks.recording_async import AsyncRecordingClient
from telnyx_provider.retry import RetryPolicy
from telnyx_provider.sandbox.views import page_json
from telnyx_provider.triggers import shared_polls
from tests.conftest import ACCOUNT_SID
from tests.hooks.test_recording_hook import DOCS_REPLY

INTERVAL = 10.0
SIDS = [f"00000000-0000-4000-8000-{i:012d}" for i in range(3)]


class _Clock:
    now = 1000.0


class _VirtualSelector(selectors.DefaultSelector):
    """Never blocks: where the loop would wait ``timeout`` seconds for I/O, the clock jumps by that much."""

    def __init__(self, clock: _Clock) -> None:
        super().__init__()
        self._clock = clock

    def select(self, timeout: float | None = None) -> list[Any]:
        ready = super().select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:
            raise RuntimeError("the loop would wait for ever: nothing is scheduled")
        self._clock.now += timeout
        return ready


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self.clock = _Clock()
        super().__init__(_VirtualSelector(self.clock))

    def time(self) -> float:
        return self.clock.now

    def stall(self, at: float, seconds: float) -> None:
        """At loop time ``at``, a callback holds the loop for ``seconds`` (what a busy triggerer does)."""

        def busy() -> None:
            self.clock.now += seconds

        self.call_at(at, busy)


class ListingTransport:
    """In place of the client's connections: every listing answers, ``duration`` seconds (loop time) after it
    was asked, one page holding our recordings, in progress; when each listing was asked is kept."""

    def __init__(self, duration: float) -> None:
        self.duration = duration
        self.listings: list[float] = []
        now = format_datetime(datetime.now(timezone.utc))
        self.recordings = [
            {**DOCS_REPLY, "sid": sid, "status": "in-progress", "duration": None, "date_created": now}
            for sid in SIDS
        ]

    async def exchange(self, request: Any, config: Any, gate: Any = None, limit: Any = None) -> Any:
        assert request.path.endswith("/Recordings.json"), request.path  # listings only in these tests
        loop = asyncio.get_running_loop()
        self.listings.append(loop.time())
        await asyncio.sleep(self.duration)
        base = f"/v2/texml/Accounts/{ACCOUNT_SID}/Recordings.json"
        page = page_json(self.recordings, len(self.recordings), 0, 250, base)
        return 200, {"Content-Type": "application/json"}, json.dumps(page).encode()

    async def aclose(self) -> None:
        pass


def listings_of(duration: float, until: float, stall: tuple[float, float] | None = None) -> list[float]:
    """Three waits share a poll from loop time 0 (relative) to ``until``; when each listing was asked,
    relative to the join. ``stall``: (at, seconds) the loop is held by another callback."""
    loop = VirtualTimeLoop()
    transport = ListingTransport(duration)
    ledgers = set(shared_polls._LEDGERS)  # what this run's poll learns is forgotten after it

    async def main() -> float:
        config = TelnyxConnectionConfig(
            conn_id="telnyx_default", base_url="https://api.telnyx.invalid/v2", api_key="KEY"
        )
        client = AsyncRecordingClient(config)
        await client._client.aclose()
        client._client = transport  # type: ignore[assignment]
        policy = RetryPolicy(max_retries=0, budget=5.0)
        joined = loop.time()
        if stall is not None:
            loop.stall(joined + stall[0], stall[1])
        async with contextlib.AsyncExitStack() as stack:
            for sid in SIDS:
                lease = shared_polls.SharedPollLease(client, ACCOUNT_SID, INTERVAL, policy, sid, None)
                await stack.enter_async_context(lease)
            await asyncio.sleep(until)
        return joined

    try:
        joined = loop.run_until_complete(main())
    finally:
        loop.close()
        for group in set(shared_polls._LEDGERS) - ledgers:
            del shared_polls._LEDGERS[group]
    return [at - joined for at in transport.listings]


def test_rounds_are_one_interval_apart_however_late_the_loop_woke_one():
    """The second round is woken 3 s late (the loop was busy); the third still comes at its time, one
    interval after the second was due, not one interval after the second began."""
    listings = listings_of(duration=0.5, until=4.5 * INTERVAL, stall=(2 * INTERVAL - 0.01, 3.0))
    assert len(listings) == 4
    first, late, third, fourth = listings
    assert first == INTERVAL  # one interval after the waits joined
    assert late > 2 * INTERVAL + 2.5  # the stall did hold the second round
    assert third == first + 2 * INTERVAL
    assert fourth == first + 3 * INTERVAL


def test_a_round_longer_than_the_interval_is_followed_at_once_and_never_by_a_burst():
    """Listings taking 2.5 intervals: each round follows the previous one as it ends, one at a time; the
    rounds it overran are not made up for."""
    listings = listings_of(duration=2.5 * INTERVAL, until=10.5 * INTERVAL)
    assert listings[0] == INTERVAL
    gaps = [later - earlier for earlier, later in itertools.pairwise(listings)]
    assert len(gaps) >= 2
    assert gaps == [2.5 * INTERVAL] * len(gaps)


def test_the_next_round_is_due_one_interval_after_this_one_was_due():
    due = shared_polls.next_round_due
    assert due(100.0, 10.0, now=100.5) == 110.0  # on time
    assert due(100.0, 10.0, now=104.0) == 110.0  # woken late, or a long listing: the schedule holds
    assert due(100.0, 10.0, now=125.0) == 125.0  # ran past it: at once, no rounds to catch up
    assert due(100.0, 10.0, now=104.0, hold=30.0) == 134.0  # the service asked to wait
