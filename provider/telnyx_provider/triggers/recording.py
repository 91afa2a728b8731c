"""RecordingCompletedTrigger: wait for a recording on the triggerer, polling asynchronously."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from telnyx_provider.errors import TelnyxApiError
from telnyx_provider.models import Verdict, assess_recording
from telnyx_provider.params import require_identifier, require_positive_number
from telnyx_provider.retry import RetryPolicy, failure_reason, is_retryable, requested_wait

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from telnyx_provider.connection import TelnyxConnectionConfig
    from telnyx_provider.hooks.recording_async import AsyncRecordingClient

log = logging.getLogger(__name__)

#: Seconds the stop of a killed wait may take, retries included: ``on_kill`` is bounded by the
#: triggerer's ``[triggerer] on_kill_timeout`` (30 s by default), and a kill should not linger.
KILL_STOP_BUDGET = 5.0
#: Cap of one backoff wait while stopping a killed wait's recording.
KILL_STOP_MAX_WAIT = 1.0
#: Shortest retry budget given to a look at the recording when the deadline is (nearly) reached: one
#: attempt, never a retry past the deadline.
MIN_LOOK_BUDGET = 0.001


class RecordingCompletedTrigger(BaseTrigger):
    """Poll a recording until it is final (``completed`` with a duration), fails, or time runs out.

    It follows the sensor's rules: ``in-progress``, ``paused`` and ``stopped`` keep waiting; ``absent``,
    ``failed`` and ``deleted`` end with a ``failed`` event; a 404 is tolerated until
    ``not_found_deadline``. It fires exactly one event, a dict with ``status`` among ``success``
    (with ``recording``), ``failed`` (with ``recording``), ``timeout`` and ``error`` (with ``message``);
    an error never turns into a busy loop.

    Its first look comes about one ``poll_interval`` after it starts: the task has just looked before
    deferring. A retryable failure (429, 5xx, no reply) that outlasts one request's retry budget does not
    end the wait: it is logged and the trigger keeps polling (waiting at least what the service asked) until
    ``deadline``; each look's retry budget is capped at the time left, so the ``timeout`` event comes at most
    one request timeout after the deadline. Only replies that will not change (403, 422, a 404 after the
    grace period, a failed TLS verification) end the wait with an ``error`` event; a 401 first makes it read
    the connection again, and it goes on if the connection changed (a rotated key).

    By default the waits of one triggerer that use the same connection settings, account, interval and retry
    settings share one poll (:mod:`telnyx_provider.triggers.shared_polls`): one listing of the account per
    interval, or one GET per recording where that is cheaper, never more requests than each polling on its
    own. The connection extra ``shared_polls`` set to ``false`` makes each wait poll on its own.

    When the task is killed by a user (marked failed or succeeded, or cleared) while deferred, Airflow 3.3+
    calls :meth:`on_kill`: a trigger that owns its recording (``stop_on_kill``, set by
    :class:`~telnyx_provider.operators.recording.StartCallRecordingOperator`) stops it. Airflow 3.1 and 3.2
    never call ``on_kill``: there a killed deferred wait leaves its recording running.

    :param recording_sid: the recording to wait for.
    :param account_sid: the account; the connection's login when ``None``.
    :param telnyx_conn_id: the Telnyx connection.
    :param poll_interval: seconds between two looks at the recording.
    :param deadline: Unix time after which the trigger gives up with a ``timeout`` event (``None``: never).
    :param not_found_deadline: Unix time until which a 404 means "not visible yet" (``None``: 404 fails).
    :param call_sid: the call the recording belongs to (what a stop needs).
    :param stop_on_kill: the wait owns the recording: stop it when the task is killed (needs ``call_sid``).
        A sensor's trigger never does: the sensor did not start the recording.
    :param max_retries: retries of each request (``None``: the connection's).
    :param retry_max_wait: cap of one backoff wait, in seconds (``None``: the connection's).
    :param retry_budget: seconds one request may take with its retries (``None``: the connection's).
    """

    def __init__(
        self,
        recording_sid: str,
        *,
        account_sid: str | None = None,
        telnyx_conn_id: str = "telnyx_default",
        poll_interval: float = 10.0,
        deadline: float | None = None,
        not_found_deadline: float | None = None,
        call_sid: str | None = None,
        stop_on_kill: bool = False,
        max_retries: int | None = None,
        retry_max_wait: float | None = None,
        retry_budget: float | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.recording_sid = recording_sid
        self.account_sid = account_sid
        self.telnyx_conn_id = telnyx_conn_id
        self.poll_interval = require_positive_number("poll_interval", poll_interval)
        self.deadline = deadline
        self.not_found_deadline = not_found_deadline
        self.call_sid = None if call_sid is None else require_identifier("call_sid", call_sid)
        self.stop_on_kill = bool(stop_on_kill)
        self.max_retries = max_retries
        self.retry_max_wait = retry_max_wait
        self.retry_budget = retry_budget
        RetryPolicy().replace(**self._retry_changes())  # refuse bad overrides when the trigger is built

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """The classpath and the JSON-safe keyword arguments that rebuild this trigger (never the key)."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "recording_sid": self.recording_sid,
                "account_sid": self.account_sid,
                "telnyx_conn_id": self.telnyx_conn_id,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
                "not_found_deadline": self.not_found_deadline,
                "call_sid": self.call_sid,
                "stop_on_kill": self.stop_on_kill,
                "max_retries": self.max_retries,
                "retry_max_wait": self.retry_max_wait,
                "retry_budget": self.retry_budget,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll until the recording is final and fire one event."""
        # The shared client is released before the event is yielded: a caller that stops iterating after
        # the first event (as dag.test() does) must not leave a pooled client open.
        yield TriggerEvent(await self._wait())

    async def on_kill(self) -> None:
        """Stop the recording when a user ended the deferred task and this wait owns it (Airflow 3.3+).

        Runs after :meth:`run` was cancelled. Airflow also calls it when the trigger moved to another
        triggerer or the task resumed on another triggerer's event: the wait then asks Airflow for its
        task's state and stops the recording only if the task ended (see
        :mod:`telnyx_provider.triggers.recording_kill`). The stop has a short retry budget of its own
        (:data:`KILL_STOP_BUDGET`); a failure is logged, never raised.
        """
        if not (self.stop_on_kill and self.call_sid):
            log.info("Wait for recording %s killed; the recording is left as it is.", self.recording_sid)
            return
        from telnyx_provider.triggers.recording_kill import run_shielded

        await run_shielded(self)

    async def _wait(self) -> dict[str, Any]:
        # aiohttp and the client stay out of DAG-parse time: the triggerer alone imports them.
        from telnyx_provider.hooks.recording_async import shared_client

        refused: tuple[TelnyxConnectionConfig, TelnyxApiError] | None = None
        try:
            while True:
                # Each borrow reads the connection: after a 401, a rotated key is picked up here.
                async with shared_client(self.telnyx_conn_id) as client:
                    if refused is not None:
                        if client.config == refused[0]:  # the same settings: the 401 stands
                            return self._event("error", message=str(refused[1]))
                        log.info(
                            "Connection %s changed since its key was refused: the wait for recording %s "
                            "goes on with the new settings.",
                            self.telnyx_conn_id,
                            self.recording_sid,
                        )
                    if client.config.shared_polls:
                        outcome = await self._poll_shared(client)
                    else:
                        outcome = await self._poll(client, first=refused is None)
                if isinstance(outcome, dict):
                    return outcome
                refused = (client.config, outcome)
        except Exception as error:  # any failure ends in one error event, never a retry loop here
            return self._event("error", message=f"{type(error).__name__}: {error}")

    async def _poll_shared(self, client: AsyncRecordingClient) -> dict[str, Any] | TelnyxApiError:
        """Wait on the poll shared with the triggerer's other waits of the same connection and account."""
        from telnyx_provider.triggers.shared_polls import SharedPollLease

        account = client.config.resolve_account_sid(self.account_sid)
        lease = SharedPollLease(
            client, account, self.poll_interval, self._policy(client), self.recording_sid, self.deadline
        )
        async with lease as waiter:
            while True:
                outcome = await waiter.next()
                if outcome is None:
                    # The deadline came before the poll's next look (or had passed when a restarted
                    # triggerer rebuilt the wait): one last look, as a wait polling on its own takes.
                    last = await self._look(client)
                    if isinstance(last, dict | TelnyxApiError):
                        return last
                    return self._event("timeout", message=self._timeout_message())
                if not isinstance(outcome, dict | TelnyxApiError):
                    raise outcome  # not the API's answer: the wait ends with an error event
                verdict = self._judge(outcome)
                if isinstance(verdict, dict | TelnyxApiError):
                    return verdict
                if self.deadline is not None and time.time() >= self.deadline:
                    return self._event("timeout", message=self._timeout_message())

    async def _poll(self, client: AsyncRecordingClient, *, first: bool) -> dict[str, Any] | TelnyxApiError:
        """Look on its own until the event, or until the key is refused (a 401: the connection is read
        again). The task looked just before deferring: the first look comes one interval later."""
        if first:
            await asyncio.sleep(self._pause(self.poll_interval))
        while True:
            outcome = await self._look(client)
            if isinstance(outcome, dict | TelnyxApiError):
                return outcome
            if self.deadline is not None and time.time() >= self.deadline:
                return self._event("timeout", message=self._timeout_message())
            await asyncio.sleep(self._pause(max(self.poll_interval, outcome)))

    async def _look(self, client: AsyncRecordingClient) -> dict[str, Any] | float | TelnyxApiError:
        """One look of this wait's own at its recording (its budget capped at the deadline), judged."""
        try:
            recording = await client.get_recording(
                self.recording_sid, account_sid=self.account_sid, retry_policy=self._look_policy(client)
            )
        except TelnyxApiError as error:
            return self._judge(error)
        return self._judge(recording)

    def _judge(self, outcome: dict[str, Any] | TelnyxApiError) -> dict[str, Any] | float | TelnyxApiError:
        """What one look's outcome (the recording, or the error of the request) means: the final event, a
        refused key (401), or the seconds the service asked us to wait (0.0: keep polling)."""
        if isinstance(outcome, TelnyxApiError):
            error = outcome
            if error.status == 401:
                log.warning(
                    "Telnyx refused the key of connection %s (HTTP 401) looking at recording %s; reading "
                    "the connection again.",
                    self.telnyx_conn_id,
                    self.recording_sid,
                )
                return error
            if (
                error.status == 404
                and self.not_found_deadline is not None
                and time.time() < self.not_found_deadline
            ):
                log.info("Recording %s is not visible yet (HTTP 404); still waiting.", self.recording_sid)
                return 0.0
            if is_retryable(error):
                log.warning(
                    "Telnyx did not answer the look at recording %s (%s) within its retry budget; still "
                    "waiting until the deadline.",
                    self.recording_sid,
                    failure_reason(error),
                )
                return requested_wait(error) or 0.0
            return self._event("error", message=str(error))
        assessment = assess_recording(outcome)
        if assessment.verdict is Verdict.DONE:
            return self._event("success", recording=outcome, message=assessment.reason)
        if assessment.verdict is Verdict.FAIL:
            return self._event("failed", recording=outcome, message=assessment.reason)
        if assessment.unknown_status:
            log.warning("%s", assessment.reason)
        return 0.0

    def _retry_changes(self) -> dict[str, Any]:
        return {"max_retries": self.max_retries, "max_wait": self.retry_max_wait, "budget": self.retry_budget}

    def _policy(self, client: AsyncRecordingClient) -> RetryPolicy:
        """The connection's retry policy with the task's overrides."""
        return client.retry_policy.replace(**self._retry_changes())

    def _look_policy(self, client: AsyncRecordingClient) -> RetryPolicy:
        """The task's policy, its budget capped at the time left before the deadline."""
        policy = self._policy(client)
        if self.deadline is None:
            return policy
        left = self.deadline - time.time()
        return policy if left >= policy.budget else policy.replace(budget=max(left, MIN_LOOK_BUDGET))

    def _pause(self, seconds: float) -> float:
        """``seconds``, shortened so as not to sleep past the deadline."""
        if self.deadline is None:
            return seconds
        return min(seconds, max(0.0, self.deadline - time.time()))

    def _event(self, status: str, **payload: Any) -> dict[str, Any]:
        return {"status": status, "recording_sid": self.recording_sid, **payload}

    def _timeout_message(self) -> str:
        return f"Recording {self.recording_sid} was not final by the deadline; gave up waiting."


# RecordingsFinishedTrigger's own imports, kept with it (the module's head belongs to the trigger above).
from contextlib import aclosing  # noqa: E402
from datetime import timedelta  # noqa: E402

from airflow.triggers.base import BaseEventTrigger  # noqa: E402

from telnyx_provider.errors import TelnyxValidationError  # noqa: E402
from telnyx_provider.recording_feed import DEFAULT_LOOKBACK, DEFAULT_MAX_PENDING_AGE  # noqa: E402
from telnyx_provider.triggers.recordings_poll import aware_moment, relay  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Hashable
    from datetime import datetime

    from telnyx_provider.recording_feed import RecordingFeed
    from telnyx_provider.triggers.recordings_poll import FeedStore, Listing


class RecordingsFinishedTrigger(BaseEventTrigger):
    """An event per recording of an account that finishes (``completed``, ``absent``), for ``AssetWatcher``.

    It lists the account's recordings once per ``poll_interval`` (the ``DateCreated`` filter, every page):
    one request per interval for the whole account, plus one per further page, however many recordings are
    in progress. Each event's payload (the asset event's extra) is the recording as the API lists it, without
    its short-lived ``media_url``. Failures and outages never end it: it logs them and keeps polling.

    Exactly once across triggerer restarts on Airflow 3.3: the watermark and the recordings already reported
    are kept in the asset's state store, written before the events leave, and both the trigger's own loop
    and the shared poll resume from it. On older Airflow (no state store) it is exactly once while the
    triggerer runs; after a restart it starts afresh, so recordings that finished while it was down are not
    reported (unless ``since`` covers them). Recordings already final when the watcher first starts are not
    reported unless ``since`` asks for them. A recording still not final ``max_pending_age`` after its
    creation is given up with a warning in the triggerer's log (no event: an event means "finished"), so it
    cannot hold the listing window open. Watchers of one account with the same arguments (connection,
    account, interval, page size, look-back, overlap, ``since``, ``max_pending_age``) share one poll on
    Airflow 3.3.

    :param account_sid: the account; the connection's login when ``None``.
    :param telnyx_conn_id: the Telnyx connection.
    :param poll_interval: seconds between two listings.
    :param since: when first started, also report recordings already final created at or after this moment
        (a timezone-aware datetime or an ISO 8601 string).
    :param lookback: seconds the first listing reaches back for recordings in progress (the longest
        recording expected; TeXML calls last 4 hours at most by default).
    :param overlap: seconds each listing reaches back before the oldest recording still in progress and the
        newest one seen (a margin for late listings; dates are Telnyx's, so clock skew does not matter).
    :param page_size: recordings per page.
    :param max_pending_age: seconds after its creation a recording still not final is given up (by
        Telnyx's clock: the newest ``date_created`` seen); a day by default.
    """

    def __init__(
        self,
        *,
        account_sid: str | None = None,
        telnyx_conn_id: str = "telnyx_default",
        poll_interval: float = 10.0,
        since: str | datetime | None = None,
        lookback: float = DEFAULT_LOOKBACK,
        overlap: float = 120.0,
        page_size: int = 1000,
        max_pending_age: float = DEFAULT_MAX_PENDING_AGE,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.account_sid = account_sid
        self.telnyx_conn_id = telnyx_conn_id
        self.poll_interval = require_positive_number("poll_interval", poll_interval)
        self.since = aware_moment("since", since)
        self.lookback = require_positive_number("lookback", lookback)
        self.overlap = require_positive_number("overlap", overlap)
        if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
            raise TelnyxValidationError("page_size", page_size, "a whole number >= 1")
        self.page_size = page_size
        self.max_pending_age = require_positive_number("max_pending_age", max_pending_age)
        if self.max_pending_age <= self.overlap:
            raise TelnyxValidationError(
                "max_pending_age", max_pending_age, f"more seconds than overlap ({self.overlap:g})"
            )

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """The classpath and the JSON-safe keyword arguments that rebuild this trigger."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "account_sid": self.account_sid,
                "telnyx_conn_id": self.telnyx_conn_id,
                "poll_interval": self.poll_interval,
                "since": self.since.isoformat() if self.since else None,
                "lookback": self.lookback,
                "overlap": self.overlap,
                "page_size": self.page_size,
                "max_pending_age": self.max_pending_age,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll the account on its own and fire an event per newly finished recording."""
        from telnyx_provider.triggers.recordings_poll import poll_listings

        feed, store = await self._open_feed()
        listings = poll_listings(
            conn_id=self.telnyx_conn_id,
            account_sid=self.account_sid,
            page_size=self.page_size,
            poll_interval=self.poll_interval,
            window_start=feed.window_start,
        )
        async with aclosing(self._events(feed, store, listings)) as events:
            async for event in events:
                yield event

    def shared_stream_key(self) -> Hashable | None:
        """Watchers of the same account with the same arguments share one poll (Airflow 3.3)."""
        return (
            "telnyx-recordings",
            self.telnyx_conn_id,
            self.account_sid,
            self.poll_interval,
            self.page_size,
            self.lookback,
            self.overlap,
            self.since.isoformat() if self.since else None,
            self.max_pending_age,
        )

    @classmethod
    async def open_shared_stream(cls, kwargs: dict[str, Any]) -> AsyncIterator[Any]:
        """The shared poll: each listing starts at the earliest window its watchers' stored states need."""
        from telnyx_provider.triggers.recordings_poll import SHARED_WINDOWS, poll_listings

        trigger = cls(**kwargs)
        key = trigger.shared_stream_key()
        # The triggerer opens the poll before its watchers have read their states: wait for the first.
        await SHARED_WINDOWS.first_watcher(key)
        async for listing in poll_listings(
            conn_id=trigger.telnyx_conn_id,
            account_sid=trigger.account_sid,
            page_size=trigger.page_size,
            poll_interval=trigger.poll_interval,
            window_start=lambda now: SHARED_WINDOWS.start(
                key, now, now - timedelta(seconds=trigger.lookback)
            ),
        ):
            yield listing

    async def filter_shared_stream(self, shared_stream: AsyncIterator[Any]) -> AsyncIterator[TriggerEvent]:
        """This watcher's events from the shared listings, judged by its own (stored) state."""
        from telnyx_provider.triggers.recordings_poll import SHARED_WINDOWS

        feed, store = await self._open_feed()
        key, watcher = self.shared_stream_key(), id(self)
        SHARED_WINDOWS.join(key, watcher, feed.window_start)
        try:
            async with aclosing(self._events(feed, store, relay(shared_stream))) as events:
                async for event in events:
                    yield event
        finally:
            SHARED_WINDOWS.leave(key, watcher)

    async def _open_feed(self) -> tuple[RecordingFeed, FeedStore]:
        from telnyx_provider.recording_feed import RecordingFeed
        from telnyx_provider.triggers.recordings_poll import FeedStore

        feed = RecordingFeed(
            account_sid=self.account_sid or "",
            overlap=self.overlap,
            since=self.since,
            lookback=self.lookback,
            max_pending_age=self.max_pending_age,
        )
        store = FeedStore(getattr(self, "asset_state_store", None))  # injected on 3.3, for watchers only
        await store.load(feed)
        return feed, store

    async def _events(
        self, feed: RecordingFeed, store: FeedStore, listings: AsyncGenerator[Listing, None]
    ) -> AsyncGenerator[TriggerEvent, None]:
        from telnyx_provider.triggers.recordings_poll import feed_events

        # Closing this generator closes the events (which put back what they did not hand over) and the
        # listings (which release the shared client).
        async with aclosing(listings), aclosing(feed_events(feed, store, listings)) as events:
            async for event in events:
                yield event
