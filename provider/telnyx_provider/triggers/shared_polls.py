"""Shared polls: the deferred waits of one triggerer that use the same connection settings and account share
one poll of their recordings.

Each interval the poll looks at every recording due for a look at once: it lists the account's recordings
created since the oldest of them (``DateCreated>=``, every page, read as ``iter_recordings`` reads them) or
fetches them one by one, whichever its :class:`~telnyx_provider.poll_plan.PollLedger` says costs fewer
requests (never more than one GET per wait, plus one request once). A recording not looked at yet is
looked for as if created shortly before its wait joined (:data:`CREATED_BEFORE_JOINING`; a start operator
defers right after starting it). A recording the listing should hold but does not (list lag, one created
before the window) is fetched directly. Each wait gets its recording, or the error of the request that looked
for it, and judges it by its own rules (deadline, 404 grace period...): see
:class:`~telnyx_provider.triggers.poll_waiters.Waiter`.

- A wait's first look comes at the first round at least half an interval after it joined (a lone wait: one
  interval after), then every round. Rounds are due one interval apart, counted from when the previous one was
  due, not from when a busy event loop got round to it: a late round does not push the later ones back.
- GETs are never sent sooner than the wait polling on its own would send them (one interval after it joined,
  then one interval after the previous reply), in that order, as many at once as the client has connections
  and the rest spread over half an interval, so a thousand waits deferred in the same second are not fetched
  in the same second; while the client's rate gate is closed (a 429) no new GET starts: the rest wait for the
  next round (:mod:`telnyx_provider.hooks.rate_gate`).
- The poll of a group starts with its first wait and stops (its task and requests cancelled and awaited) when
  the last one leaves. Airflow's shared streams (``BaseEventTrigger.shared_stream_key``) serve event triggers
  only, open the stream with one trigger's arguments and know nothing of the others' recordings: a task
  trigger cannot use them.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar

from telnyx_provider.errors import TelnyxApiError
from telnyx_provider.pages import PageGuard
from telnyx_provider.poll_plan import PollLedger
from telnyx_provider.recording_feed import parse_moment
from telnyx_provider.retry import requested_wait
from telnyx_provider.triggers.poll_waiters import Waiter

if TYPE_CHECKING:
    from collections.abc import Coroutine, Hashable

    from telnyx_provider.hooks.recording_async import AsyncRecordingClient
    from telnyx_provider.poll_plan import Plan
    from telnyx_provider.retry import RetryPolicy
    from telnyx_provider.triggers.poll_waiters import Outcome

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Part of the interval over which the GETs of one round are spread.
GET_SPREAD = 0.5
#: Shortest pause between two batches of a round's GETs, in seconds.
BATCH_PAUSE = 0.01
#: A listing refused with these statuses stops listings for the poll (its GETs are not affected); 200: pages
#: that cannot be trusted (one repeating the page before it, or not a list of recordings).
LISTING_REFUSED = frozenset({200, 400, 422})
#: Seconds before a wait joined that its recording is first looked for in a listing (then its own date).
CREATED_BEFORE_JOINING = 120.0
#: Shortest retry budget of a GET for waits at (or past) their deadline: one attempt.
MIN_LOOK_BUDGET = 0.001


class SharedPoll:
    """The poll of one group of waits (see the module docstring).

    :param client: the group's shared client.
    :param account_sid: the account.
    :param interval: seconds between two rounds.
    :param policy: retries of each request.
    :param ledger: what the group's polls learned so far.
    """

    def __init__(
        self,
        client: AsyncRecordingClient,
        account_sid: str,
        interval: float,
        policy: RetryPolicy,
        ledger: PollLedger,
    ) -> None:
        self.client = client
        self.account_sid = account_sid
        self.interval = interval
        self.policy = policy
        self.ledger = ledger
        self._waiters: dict[str, list[Waiter]] = {}
        self._created: dict[str, float] = {}  # creation times learned from the replies
        self._looked: dict[str, float] = {}  # the loop's time of the last reply about each recording
        self._busy: set[str] = set()  # recordings with a GET under way
        self._fetches: set[asyncio.Task[Any]] = set()  # GETs, and spreads of GETs, under way
        self._task: asyncio.Task[None] | None = None

    def add(self, waiter: Waiter) -> None:
        """Join ``waiter``; the first one starts the poll, whose first round comes one interval later."""
        self._waiters.setdefault(waiter.sid, []).append(waiter)
        if self._task is None:
            loop = asyncio.get_running_loop()
            self._task = loop.create_task(self._run(loop.time() + self.interval))

    def remove(self, waiter: Waiter) -> bool:
        """Let ``waiter`` go; ``True`` when it was the last one."""
        waiters = self._waiters.get(waiter.sid, [])
        if waiter in waiters:
            waiters.remove(waiter)
        if not waiters:
            self._waiters.pop(waiter.sid, None)
            self._created.pop(waiter.sid, None)
            self._looked.pop(waiter.sid, None)
        return not self._waiters

    async def stop(self) -> None:
        """Cancel the rounds and the GETs under way, and wait until they are gone."""
        tasks = [task for task in (self._task, *self._fetches) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, first_round: float) -> None:
        loop = asyncio.get_running_loop()
        due = first_round
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            started = loop.time()
            try:
                asked = await self._round(started)
            except Exception as error:  # a failure of ours: the waits end with it, as their own loop would
                log.exception("The shared poll of account %s failed.", self.account_sid)
                self._deliver_all(error, started)
                asked = 0.0
            now = loop.time()
            # One interval after this round was due, not after it began: a busy event loop that woke a round
            # late does not push every later round (and each wait's looks) back. A round that ran past that
            # time is followed at once, never by rounds to catch up; a rate limit holds the next round.
            due = next_round_due(due, self.interval, now, max(asked, self.client.rate_gate.closed_for()))

    async def _round(self, started: float) -> float:
        """Look at every recording due; the seconds the service asked to wait before the next round."""
        first_look_after = started - self.interval / 2
        due: dict[str, float | None] = {}
        for sid, waiters in self._waiters.items():
            if sid in self._busy or not any(w.registered <= first_look_after for w in waiters):
                continue
            # Not looked at yet: it was most likely created shortly before its wait joined (a start operator
            # defers right after starting it); a listing that misses it fetches it.
            due[sid] = self._created.get(sid) or min(w.joined for w in waiters) - CREATED_BEFORE_JOINING
        if not due:
            return 0.0
        plan = self.ledger.plan(due, time.time())
        asked, pages, answered, started_gets = 0.0, 0, 0, 0
        # The recordings fetched one by one do not wait for the listing (which may take a while).
        gets = self._background(self._fetch_spread(list(plan.fetched), started)) if plan.fetched else None
        try:
            if plan.window_start is not None:
                missing, asked, pages, answered = await self._list(plan)
                started_gets += await self._fetch_spread(missing, started)
        except BaseException:
            if gets is not None:
                gets.cancel()
            raise
        if gets is not None:
            started_gets += await gets
        log.debug(
            "Shared poll of account %s: %s look(s), %s answered by %s list page(s), %s GET(s) (balance %s).",
            self.account_sid,
            answered + started_gets,
            answered,
            pages,
            started_gets,
            self.ledger.balance,
        )
        return asked

    async def _list(self, plan: Plan) -> tuple[list[str], float, int, int]:
        """Read the listing page by page while it pays: the recordings it did not answer, the seconds the
        service asked to wait, the pages read and the waits answered."""
        assert plan.window_start is not None
        since = datetime.fromtimestamp(plan.window_start, timezone.utc)
        wanted = dict.fromkeys(plan.listed)
        created: list[float] = []
        answered = pages = 0
        complete = False
        guard = PageGuard("recordings")
        try:
            while self.ledger.may_read_page(pages, answered):
                recordings, more = await self.client.list_recordings_page(
                    since,
                    page=pages,
                    page_size=self.ledger.page_size,
                    account_sid=self.account_sid,
                    retry_policy=self.policy,
                    guard=guard,
                )
                pages += 1
                for recording in recordings:
                    sid, moment = recording.get("sid"), _creation_time(recording)
                    if moment is not None:
                        created.append(moment)
                    if not isinstance(sid, str) or sid not in self._waiters:
                        continue
                    if moment is not None and sid not in self._created:
                        self._created[sid] = moment
                    if sid in wanted:
                        del wanted[sid]
                        answered += 1
                        self._looked[sid] = asyncio.get_running_loop().time()
                        self._deliver(sid, recording)
                if not more or not wanted:  # read to the end, or every wait answered: no further page pays
                    complete = True
                    break
        except TelnyxApiError as error:
            if error.status in LISTING_REFUSED:
                self.ledger.refused = str(error)
                log.warning("Listing recordings was refused (%s); this poll fetches them one by one.", error)
                return list(wanted), 0.0, pages, answered
            for sid in wanted:  # the waits judge it as they would the failure of their own GET
                self._deliver(sid, error)
            return [], requested_wait(error) or 0.0, pages, answered
        finally:
            self.ledger.settle(answered, pages)
        self.ledger.record_listing(plan.window_start, created, pages, complete, time.time())
        return list(wanted), 0.0, pages, answered

    async def _fetch_spread(self, sids: list[str], round_start: float) -> int:
        """Start one GET per recording, spread over part of the interval, none while the rate gate is closed;
        the GETs started.

        A recording is never fetched sooner than its wait would have fetched it on its own: one interval after
        the wait joined, then one interval after the reply to the previous look. So where GETs are cheaper
        than a listing, a shared poll costs at most what the waits polling on their own would; one whose time
        has not come within this round is left for the next.
        """
        loop = asyncio.get_running_loop()
        step = self.interval * GET_SPREAD / max(1, len(sids))
        own_times = []
        for index, sid in enumerate(sids):
            waiters = self._waiters.get(sid)
            if waiters:
                last = max(min(w.registered for w in waiters), self._looked.get(sid, -math.inf))
                own_times.append((last + self.interval, index, sid))
        # In the order their own polls would look, through a token bucket (as many at once as the client has
        # connections, then one every ``step``): a thousand waits deferred in the same second are fetched
        # over half an interval, while looks already spread out keep their own times (one slow reply does
        # not push the others back).
        burst = float(max(1, self.client.config.pool_size))
        tokens, clock = burst, -math.inf
        due: list[tuple[float, str]] = []
        for own_time, _, sid in sorted(own_times):
            at = max(own_time, round_start, clock)
            tokens = min(burst, tokens + (at - clock) / step) if clock > -math.inf else tokens
            if tokens < 1:
                at += (1 - tokens) * step
                tokens = 1.0
            tokens, clock = tokens - 1, at
            if at > round_start + self.interval:
                break
            due.append((at, sid))
        started = 0
        for index, (at, sid) in enumerate(due):
            wait = at - loop.time()
            if wait >= BATCH_PAUSE:
                await asyncio.sleep(wait)
            if self.client.rate_gate.closed_for() > 0:
                log.info("Telnyx asked to slow down: %s look(s) wait for the next round.", len(due) - index)
                return started
            waiters = self._waiters.get(sid)
            if not waiters or sid in self._busy:
                continue
            started += 1
            self._busy.add(sid)
            for waiter in waiters:
                waiter.in_flight = True
            self._background(self._fetch(sid, self._look_policy(waiters)))
        return started

    def _background(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run ``work`` as a task of this poll: :meth:`stop` cancels it and waits for it."""
        task = asyncio.get_running_loop().create_task(work)
        self._fetches.add(task)
        task.add_done_callback(self._fetches.discard)
        return task

    async def _fetch(self, sid: str, policy: RetryPolicy) -> None:
        outcome: Outcome
        try:
            outcome = await self.client.get_recording(sid, account_sid=self.account_sid, retry_policy=policy)
        except Exception as error:  # the waits judge it (retryable, 404 within their grace...)
            outcome = error
        finally:
            self._busy.discard(sid)
            if sid in self._waiters:  # its waits may have left meanwhile (and taken what it kept with them)
                self._looked[sid] = asyncio.get_running_loop().time()
        if isinstance(outcome, dict):
            moment = _creation_time(outcome)
            if moment is not None and sid in self._waiters:
                self._created[sid] = moment
        self._deliver(sid, outcome)

    def _look_policy(self, waiters: list[Waiter]) -> RetryPolicy:
        """The poll's policy, its budget capped at the time its waits have left (when all have a deadline)."""
        if any(waiter.deadline is None for waiter in waiters):
            return self.policy
        left = max(waiter.deadline or 0.0 for waiter in waiters) - time.time()
        return (
            self.policy
            if left >= self.policy.budget
            else self.policy.replace(budget=max(left, MIN_LOOK_BUDGET))
        )

    def _deliver(self, sid: str, outcome: Outcome) -> None:
        for waiter in self._waiters.get(sid, ()):
            waiter.deliver(outcome)

    def _deliver_all(self, outcome: Outcome, started: float) -> None:
        for waiters in list(self._waiters.values()):
            for waiter in waiters:
                if waiter.registered <= started - self.interval / 2:
                    waiter.deliver(outcome)


def next_round_due(due: float, interval: float, now: float, hold: float = 0.0) -> float:
    """When the round after one that was due at ``due`` is due (event-loop times): one interval after ``due``,
    however late that round began; at once (``now``) if it ran past that, never earlier than ``hold`` seconds
    from ``now`` (what a rate limit asked).

    :param due: when the round just run was due.
    :param interval: seconds between two rounds.
    :param now: the loop's time, the round over.
    :param hold: seconds the service asked to wait (0.0: none).
    """
    return max(due + interval, now + hold)


def _creation_time(recording: dict[str, Any]) -> float | None:
    moment = parse_moment(recording.get("date_created"))
    return None if moment is None else moment.timestamp()


#: The polls running: (event loop id, group) -> poll.
_POLLS: dict[tuple[int, Hashable], SharedPoll] = {}
#: What each group's polls learned, for the life of the process (a poll stops when its last wait leaves);
#: the oldest of those not in use is forgotten beyond :data:`MAX_LEDGERS` (a rotated key makes a new group).
_LEDGERS: dict[Hashable, PollLedger] = {}
MAX_LEDGERS = 64


def _ledger(group: Hashable) -> PollLedger:
    ledger = _LEDGERS.get(group)
    if ledger is None:
        in_use = {key[1] for key in _POLLS}
        for old in [key for key in _LEDGERS if key not in in_use][: max(0, len(_LEDGERS) + 1 - MAX_LEDGERS)]:
            del _LEDGERS[old]
        ledger = _LEDGERS[group] = PollLedger()
    return ledger


class SharedPollLease:
    """One wait's membership of its group's poll (``async with``, giving its
    :class:`~telnyx_provider.triggers.poll_waiters.Waiter`).

    Waits share a poll when they share the client (the connection's settings), the account, the interval
    and the retry policy.

    :param client: the wait's shared client.
    :param account_sid: the account.
    :param interval: seconds between two looks.
    :param policy: retries of each request.
    :param recording_sid: the recording waited for.
    :param deadline: Unix time the wait ends (``None``: never).
    """

    __slots__ = ("_account_sid", "_client", "_interval", "_key", "_policy", "_poll", "_waiter")

    def __init__(
        self,
        client: AsyncRecordingClient,
        account_sid: str,
        interval: float,
        policy: RetryPolicy,
        recording_sid: str,
        deadline: float | None,
    ) -> None:
        self._client = client
        self._account_sid = account_sid
        self._interval = interval
        self._policy = policy
        self._key: tuple[int, Hashable] | None = None
        self._poll: SharedPoll | None = None
        self._waiter = Waiter(recording_sid, deadline, 0.0)

    async def __aenter__(self) -> Waiter:
        loop = asyncio.get_running_loop()
        group = (self._client.config, self._account_sid, self._interval, self._policy)
        key = self._key = (id(loop), group)
        poll = _POLLS.get(key)
        if poll is None:
            poll = SharedPoll(self._client, self._account_sid, self._interval, self._policy, _ledger(group))
            _POLLS[key] = poll
        self._poll = poll
        self._waiter.registered, self._waiter.joined = loop.time(), time.time()
        poll.add(self._waiter)
        return self._waiter

    async def __aexit__(self, *exc_info: object) -> None:
        poll, self._poll = self._poll, None
        if poll is not None and poll.remove(self._waiter) and _POLLS.get(self._key) is poll:  # type: ignore[arg-type]
            del _POLLS[self._key]  # type: ignore[arg-type]
            await poll.stop()
