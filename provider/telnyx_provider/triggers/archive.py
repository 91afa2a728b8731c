"""RecordingsIntervalTrigger: wait on the triggerer until an interval's not-final recordings are final.

One trigger watches every recording an archive run left behind, with one poll shared by all of them: each
interval it lists the archive's interval (``DateCreated`` filters both ways, every page; one request per
page, however many recordings it waits for) and checks them all against that one listing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from telnyx_provider.archive_plan import Disposition, disposition, parse_interval
from telnyx_provider.params import require_identifier, require_positive_number
from telnyx_provider.retry import RetryPolicy, failure_reason, is_retryable, requested_wait

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

log = logging.getLogger(__name__)
#: Listings in a row a waited-for recording may be missing from before it counts as gone (deleted).
MISSES_BEFORE_GONE = 3


class RecordingsIntervalTrigger(BaseTrigger):
    """Wait until each of ``recording_sids`` (created in ``[date_from, date_to)``) is final, or gone.

    Fires one event: ``{"status": "final", "recording_sids": [...]}`` once none is left to wait for (each
    is ``completed``, ended without audio, or was missing from :data:`MISSES_BEFORE_GONE` listings in a
    row), ``{"status": "timeout", "pending": [...]}`` at ``deadline``, or ``{"status": "error", "message"}``
    for a reply that will not change (401, 403, 422...). A failed listing that the retries could not save
    (an outage) is logged and tried again next interval, up to the deadline. Events never carry a media link.

    :param recording_sids: the recordings to wait for.
    :param date_from: the interval's start (ISO 8601).
    :param date_to: the interval's end (ISO 8601).
    :param account_sid: the account; the connection's login when ``None``.
    :param telnyx_conn_id: the Telnyx connection.
    :param poll_interval: seconds between two listings.
    :param deadline: Unix time at which it gives up with a ``timeout`` event (``None``: never).
    :param page_size: recordings per list page.
    :param max_retries: retries of each request (``None``: the connection's).
    :param retry_max_wait: cap of one backoff wait, in seconds (``None``: the connection's).
    :param retry_budget: seconds one request may take with its retries (``None``: the connection's).
    """

    def __init__(
        self,
        recording_sids: list[str],
        date_from: str,
        date_to: str,
        *,
        account_sid: str | None = None,
        telnyx_conn_id: str = "telnyx_default",
        poll_interval: float = 60.0,
        deadline: float | None = None,
        page_size: int = 1000,
        max_retries: int | None = None,
        retry_max_wait: float | None = None,
        retry_budget: float | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.recording_sids = sorted({require_identifier("recording_sid", sid) for sid in recording_sids})
        self.interval = parse_interval(date_from, date_to)
        self.account_sid = account_sid
        self.telnyx_conn_id = telnyx_conn_id
        self.poll_interval = require_positive_number("poll_interval", poll_interval)
        self.deadline = deadline
        self.page_size = page_size
        self.max_retries, self.retry_max_wait, self.retry_budget = max_retries, retry_max_wait, retry_budget
        RetryPolicy().replace(max_retries=max_retries, max_wait=retry_max_wait, budget=retry_budget)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """The classpath and the JSON-safe keyword arguments that rebuild this trigger (never the key)."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "recording_sids": self.recording_sids,
                "date_from": self.interval.start.isoformat(),
                "date_to": self.interval.end.isoformat(),
                "account_sid": self.account_sid,
                "telnyx_conn_id": self.telnyx_conn_id,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
                "page_size": self.page_size,
                "max_retries": self.max_retries,
                "retry_max_wait": self.retry_max_wait,
                "retry_budget": self.retry_budget,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """List the interval every ``poll_interval`` until nothing is left to wait for; fire one event."""
        yield TriggerEvent(await self._wait())

    async def _wait(self) -> dict[str, Any]:
        from telnyx_provider.hooks.recording_async import shared_client

        pending = set(self.recording_sids)
        misses: dict[str, int] = dict.fromkeys(pending, 0)
        while pending:
            pause = self.poll_interval
            try:
                async with shared_client(self.telnyx_conn_id) as client:
                    policy = client.retry_policy.replace(
                        max_retries=self.max_retries, max_wait=self.retry_max_wait, budget=self.retry_budget
                    )
                    listing = await client.list_recordings_created_since(
                        self.interval.start,
                        date_created_before=self.interval.end,
                        account_sid=self.account_sid,
                        page_size=self.page_size,
                        retry_policy=policy,
                    )
            except Exception as error:
                if not is_retryable(error):
                    return {"status": "error", "message": f"{type(error).__name__}: {error}"}
                log.warning(
                    "Listing the interval failed (%s); %d recording(s) still awaited, trying again.",
                    failure_reason(error),
                    len(pending),
                )
                pause = max(pause, requested_wait(error) or 0.0)
            else:
                listed = {item.get("sid"): item for item in listing}
                for sid in sorted(pending):
                    recording = listed.get(sid)
                    misses[sid] = 0 if recording is not None else misses[sid] + 1
                    if misses[sid] >= MISSES_BEFORE_GONE:
                        log.warning("Recording %s is no longer listed: it counts as gone.", sid)
                        pending.discard(sid)
                    elif recording is not None and disposition(recording) is not Disposition.NOT_FINAL:
                        pending.discard(sid)
                if not pending:
                    break
                log.info("%d recording(s) of the interval are not final yet.", len(pending))
            if self.deadline is not None and time.time() + pause >= self.deadline:
                await asyncio.sleep(max(0.0, self.deadline - time.time()))
                return {"status": "timeout", "pending": sorted(pending)}
            await asyncio.sleep(pause)
        return {"status": "final", "recording_sids": self.recording_sids}
