"""The polling behind :class:`~telnyx_provider.triggers.recording.RecordingsFinishedTrigger`.

- :func:`poll_listings`: list the account's recordings (``DateCreated`` filter, every page) once per
  interval, forever, each a :class:`Listing` that says where it started; a failure (an outage, a 5xx after
  the client's retries, a bad key) is logged and the next interval tries again.
- :class:`FeedStore`: where a watcher keeps its :class:`~telnyx_provider.recording_feed.RecordingFeed`: the
  asset's state store on Airflow 3.3 (injected by the triggerer into a watcher), else memory. What it
  writes, and what it compares with, are copies.
- :class:`SharedWindows`: on Airflow 3.3 watchers of one account share one poll, opened by the triggerer
  from the first watcher's arguments alone (``open_shared_stream(kwargs)``: no state store). Each watcher
  registers the window its own (stored) feed needs, and the shared poll lists from the earliest of them.
- :func:`feed_events`: turn listings into one trigger event per newly finished recording, the state saved
  before the events leave; a listing that starts after the window the feed needs (a shared listing made
  before this watcher joined) is passed over.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import TriggerEvent

from telnyx_provider._compat import AirflowException
from telnyx_provider.errors import TelnyxValidationError
from telnyx_provider.recording_feed import parse_moment

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator, Callable, Hashable

    from telnyx_provider.recording_feed import RecordingFeed

log = logging.getLogger(__name__)

#: The state store key of a watcher's feed.
STATE_KEY = "telnyx_recordings_feed"
#: Fields of a recording left out of the event: ``media_url`` is a bearer link to the audio, valid minutes
#: (Airflow's triggerer logs every event it fires); fetch the recording by its SID to download it.
OMITTED_FIELDS = ("media_url",)
#: The longest wait between two listings after failures (unless the poll interval is longer).
MAX_RETRY_WAIT = 60.0


@dataclass(frozen=True)
class Listing:
    """One full listing: the recordings created at or after ``start``, listed when it was ``listed_at``.

    :param recordings: the recordings, every page.
    :param start: the ``DateCreated>=`` filter it was made with.
    :param listed_at: our clock when the window was chosen (the ``now`` given to ``window_start``).
    """

    recordings: list[dict[str, Any]]
    start: datetime
    listed_at: datetime


def event_payload(recording: dict[str, Any]) -> dict[str, Any]:
    """The payload (and asset event extra) of a finished recording: the recording without its media link."""
    return {name: value for name, value in recording.items() if name not in OMITTED_FIELDS}


async def poll_listings(
    *,
    conn_id: str,
    account_sid: str | None,
    page_size: int,
    poll_interval: float,
    window_start: Callable[[datetime], datetime],
) -> AsyncGenerator[Listing, None]:
    """Yield the recordings created since ``window_start(now)``, once per ``poll_interval``, forever.

    One request per interval plus one per further page. Nothing ends it but cancellation: a failed listing
    (after the client's own retries) is logged and tried again after :func:`retry_wait`.
    """
    # aiohttp and the client stay out of DAG-parse time: the triggerer alone imports them.
    from telnyx_provider.hooks.recording_async import shared_client

    failures = 0
    while True:
        try:
            async with shared_client(conn_id) as client:
                while True:
                    now = datetime.now(timezone.utc)
                    start = window_start(now)
                    recordings = await client.list_recordings_created_since(
                        start, account_sid=account_sid, page_size=page_size
                    )
                    if failures:
                        log.info("Listing recordings works again after %s failed attempt(s).", failures)
                        failures = 0
                    yield Listing(recordings, start, now)
                    await asyncio.sleep(poll_interval)
        except (AirflowException, OSError, ValueError, LookupError) as error:
            # The API's answers (TelnyxApiError), a connection missing or unreadable (yet), a bad setting.
            failures += 1
            wait = retry_wait(poll_interval, failures)
            log.warning(
                "Listing the recordings of connection %s failed (attempt %s); trying again in %.3g s: %s",
                conn_id,
                failures,
                wait,
                error,
            )
        except Exception as error:  # anything else: still never the end of the watcher
            failures += 1
            wait = retry_wait(poll_interval, failures)
            log.exception("Unexpected failure listing recordings (%s); trying again.", type(error).__name__)
        await asyncio.sleep(wait)


def retry_wait(poll_interval: float, failures: int) -> float:
    """Seconds before trying again after ``failures`` failed listings in a row: the interval, doubling from
    the second failure, at most a minute (or the interval, if longer): a long outage is not hammered, and
    the watcher notices the end of one within a minute."""
    backoff: float = poll_interval * 2.0 ** min(failures - 1, 16)
    return min(backoff, max(poll_interval, MAX_RETRY_WAIT))


class FeedStore:
    """Loads and saves a watcher's feed in the asset's state store; in memory only without one.

    :param accessors: the trigger's ``asset_state_store`` (Airflow 3.3, as a watcher), or ``None``.
    """

    def __init__(self, accessors: Any) -> None:
        self._accessors = accessors
        self._saved: dict[str, Any] | None = None

    @property
    def durable(self) -> bool:
        """Whether the feed survives a triggerer restart."""
        return self._accessors is not None

    async def load(self, feed: RecordingFeed) -> None:
        """Restore ``feed`` from the store, if it holds a state of this account."""
        if self._accessors is None:
            return
        try:
            data = await self._accessors.aget(STATE_KEY)
        except ValueError as error:  # one trigger watching several assets has no single store
            log.warning(
                "No single asset state store for this watcher (%s): its progress is kept in memory only, "
                "as on Airflow before 3.3. Give each asset its own watcher to make it durable.",
                error,
            )
            self._accessors = None
            return
        if feed.restore(data):
            self._saved = feed.to_json()  # a copy, like every state it compares and writes
            log.info("Resumed watching recordings of account %s from the asset's state.", feed.account_sid)

    async def save(self, feed: RecordingFeed) -> None:
        """Write ``feed`` to the store if it changed since it was last written.

        Both the state written and the one kept to compare with are copies
        (:meth:`~telnyx_provider.recording_feed.RecordingFeed.to_json`):
        a listing that changes the feed in place (finishing recordings, say) is a change, and is written.
        """
        if self._accessors is None:
            return
        state = feed.to_json()
        if state != self._saved:
            await self._accessors.aset(STATE_KEY, state)
            self._saved = feed.to_json()


class SharedWindows:
    """The window each watcher of a shared poll needs, by the poll's key (one triggerer process).

    The triggerer opens a shared poll from one watcher's arguments (``open_shared_stream(kwargs)``), which
    have no state store: only the watchers know where their stored feeds resume. Each registers a function
    giving its feed's window start (:meth:`join`) and removes it when it stops (:meth:`leave`); the poll
    lists from the earliest (:meth:`start`), so it covers what every watcher still waits for.
    """

    def __init__(self) -> None:
        self._needs: dict[Hashable, dict[int, Callable[[datetime], datetime]]] = {}

    def join(self, key: Hashable, watcher: int, need: Callable[[datetime], datetime]) -> None:
        """Register ``watcher``'s window (``need(now)``) in the poll ``key``."""
        self._needs.setdefault(key, {})[watcher] = need

    def leave(self, key: Hashable, watcher: int) -> None:
        """Remove ``watcher`` from the poll ``key``."""
        needs = self._needs.get(key, {})
        needs.pop(watcher, None)
        if not needs:
            self._needs.pop(key, None)

    def has_watchers(self, key: Hashable) -> bool:
        """Whether a watcher of the poll ``key`` has registered its window."""
        return bool(self._needs.get(key))

    def start(self, key: Hashable, now: datetime, default: datetime) -> datetime:
        """The earliest window of the poll ``key``'s watchers (``default`` while none is registered)."""
        needs = list(self._needs.get(key, {}).values())
        return min((need(now) for need in needs), default=default)

    async def first_watcher(self, key: Hashable, interval: float = 0.05) -> None:
        """Wait until a watcher of the poll ``key`` has registered its window (the poll starts before the
        watchers have read their states)."""
        while not self.has_watchers(key):
            await asyncio.sleep(interval)


#: The shared polls' windows of this triggerer process.
SHARED_WINDOWS = SharedWindows()


async def feed_events(
    feed: RecordingFeed, store: FeedStore, listings: AsyncIterator[Listing]
) -> AsyncGenerator[TriggerEvent, None]:
    """One event per recording that finished, in listing order, from each listing in ``listings``.

    The state is saved *before* a listing's events leave, so a restart never reports them again. If the
    consumer stops midway through a listing's events (the generator is closed), those not handed over are
    put back and saved, so the next run reports them. An event counts as handed over once the consumer
    asks for the next one: Airflow's triggerer takes an event, awaits its log line and only then queues
    it, so a trigger cancelled there (a triggerer shutting down, the trigger moved or replaced) had not
    queued the event it was holding. A listing that starts after the window ``feed``
    needs (made for other watchers before this one joined a shared poll) is passed over: it cannot show
    everything this feed waits for.
    """
    async for listing in listings:
        window = feed.window_start(listing.listed_at)
        recordings = within_window(feed, listing)
        if recordings is None:
            log.debug(
                "A shared listing from %s misses part of this watcher's window; passed over.", listing.start
            )
            continue
        batch = feed.observe(recordings, listed_from=window)
        if feed.abandoned:
            log.warning(
                "Gave up on %s recording(s) of account %s still not final %.3g h after they were created "
                "(max_pending_age); they will not be reported: %s",
                len(feed.abandoned),
                feed.account_sid,
                feed.max_pending_age / 3600,
                ", ".join(f"{sid} (created {created})" for sid, created in feed.abandoned),
            )
        try:
            await store.save(feed)
        except Exception as error:  # no event may leave unless its report is stored: try again next time
            log.warning("Could not save the watcher's state (%s); its events wait for the next poll.", error)
            feed.unreport(batch)
            continue
        for index, recording in enumerate(batch):
            try:
                yield TriggerEvent(event_payload(recording))
            except GeneratorExit:  # the consumer may not have kept this one: it did not ask for the next
                feed.unreport(batch[index:])
                await store.save(feed)
                raise


def within_window(feed: RecordingFeed, listing: Listing) -> list[dict[str, Any]] | None:
    """What ``listing`` shows of the window ``feed`` needs (the listing ``feed`` would have made itself), or
    ``None`` if it starts later than that window.

    A shared listing may reach further back than this watcher's own window (for another watcher's sake):
    what it shows before the window is left out, as this watcher's own listing would not show it (a
    recording final before this watcher's baseline is no news to it).
    """
    own_start = feed.window_start(listing.listed_at)
    if listing.start > own_start:
        return None
    if listing.start == own_start:
        return listing.recordings
    return [
        recording
        for recording in listing.recordings
        if (created := parse_moment(recording.get("date_created"))) is None or created >= own_start
    ]


async def relay(stream: AsyncIterator[Any]) -> AsyncGenerator[Any, None]:
    """``stream`` as an async generator (the triggerer owns the shared stream and closes it itself)."""
    async for item in stream:
        yield item


def aware_moment(argument: str, value: object) -> datetime | None:
    """``value`` (a timezone-aware datetime or an ISO 8601 string with an offset) as a UTC datetime."""
    if value is None:
        return None
    moment: object = value
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            moment = None
    if not isinstance(moment, datetime) or moment.utcoffset() is None:
        raise TelnyxValidationError(argument, value, "a timezone-aware datetime or ISO 8601 string")
    return moment.astimezone(timezone.utc)
