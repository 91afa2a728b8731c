"""The polling behind :class:`~telnyx_provider.triggers.recording.RecordingsFinishedTrigger`.

- :func:`poll_listings`: list the account's recordings (``DateCreated`` filter, every page) once per
  interval, forever; a failure (an outage, a 5xx after the client's retries, a bad key) is logged and the
  next interval tries again.
- :class:`FeedStore`: where a watcher keeps its :class:`~telnyx_provider.recording_feed.RecordingFeed`: the
  asset's state store on Airflow 3.3 (injected by the triggerer into a watcher), else memory.
- :func:`feed_events`: turn listings into one trigger event per newly finished recording, the state saved
  before the events leave.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import TriggerEvent

from telnyx_provider._compat import AirflowException
from telnyx_provider.errors import TelnyxValidationError

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator, Callable

    from telnyx_provider.recording_feed import RecordingFeed

log = logging.getLogger(__name__)

#: The state store key of a watcher's feed.
STATE_KEY = "telnyx_recordings_feed"
#: Fields of a recording left out of the event: ``media_url`` is a bearer link to the audio, valid minutes
#: (Airflow's triggerer logs every event it fires); fetch the recording by its SID to download it.
OMITTED_FIELDS = ("media_url",)
#: The longest wait between two listings after failures (unless the poll interval is longer).
MAX_RETRY_WAIT = 60.0


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
) -> AsyncGenerator[list[dict[str, Any]], None]:
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
                    start = window_start(datetime.now(timezone.utc))
                    listing = await client.list_recordings_created_since(
                        start, account_sid=account_sid, page_size=page_size
                    )
                    if failures:
                        log.info("Listing recordings works again after %s failed attempt(s).", failures)
                        failures = 0
                    yield listing
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
            self._saved = feed.to_json()
            log.info("Resumed watching recordings of account %s from the asset's state.", feed.account_sid)

    async def save(self, feed: RecordingFeed) -> None:
        """Write ``feed`` to the store if it changed since it was last written."""
        if self._accessors is None:
            return
        state = feed.to_json()
        if state != self._saved:
            await self._accessors.aset(STATE_KEY, state)
            self._saved = state


async def feed_events(
    feed: RecordingFeed, store: FeedStore, listings: AsyncIterator[list[dict[str, Any]]]
) -> AsyncGenerator[TriggerEvent, None]:
    """One event per recording that finished, in listing order, from each listing in ``listings``.

    The state is saved *before* a listing's events leave, so a restart never reports them again. If the
    consumer stops midway through a listing's events (the generator is closed), those not handed over are
    put back and saved, so the next run reports them.
    """
    async for listing in listings:
        batch = feed.observe(listing)
        try:
            await store.save(feed)
        except Exception as error:  # no event may leave unless its report is stored: try again next time
            log.warning("Could not save the watcher's state (%s); its events wait for the next poll.", error)
            feed.unreport(batch)
            continue
        for index, recording in enumerate(batch):
            try:
                yield TriggerEvent(event_payload(recording))
            except GeneratorExit:
                feed.unreport(batch[index + 1 :])
                await store.save(feed)
                raise


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
