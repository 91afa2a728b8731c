"""How a shared poll looks at the recordings its waits wait for: one listing or one GET each (pure: no I/O).

Each interval, the recordings due for a look are either read from one listing of the account
(``DateCreated>=`` the oldest of them, every page) or fetched one by one (``GET .../Recordings/{sid}.json``),
whichever costs fewer requests by the poll's own count, kept in a :class:`PollLedger`:

- what the last listing held: the creation times of the recordings it listed (ours and everybody else's), so
  the pages a listing from any later start would take can be estimated, new arrivals included;
- the *balance*: over every listing so far, the waits it answered minus the pages it cost. A listing answering
  ``k`` waits in ``p`` pages saves ``k - p`` requests against one GET per wait, as the waits it did not answer
  are fetched one by one anyway.

A page is read only while the balance covers the worst case, that it answers none of the waits
(:meth:`PollLedger.may_read_page`); the first listing, before anything is known of the account, may risk one
request. So over the life of a ledger a shared poll never sends more requests than one GET per due recording
per interval, plus one; in an account busy with recordings that are not ours it fetches one by one.

Recordings created long before the others (an old recording a sensor waits for) are fetched one by one rather
than stretching every listing back to them, when that is cheaper (:meth:`PollLedger.plan` tries every start).
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

#: Recordings per list page. The API serves up to 1,000; a page of 1,000 is ~0.75 MB of JSON parsed at once,
#: which grew a triggerer by ~2 MB more than pages of 250 (benchmarks/WAITS.md), at one request more per 250
#: recordings in the window.
PAGE_SIZE = 250
#: A listing answering fewer waits than this cannot cost less than their GETs.
MIN_LISTED = 2
#: Seconds of the newest creations that give the account's rate of new recordings.
RATE_WINDOW = 60.0
#: Seconds after which what a listing said of the account is too old to decide by: the next listing, if the
#: balance allows one, looks again.
STALE_AFTER = 600.0


@dataclass(frozen=True)
class Plan:
    """One interval's looks.

    :param window_start: Unix time the listing starts at (``DateCreated>=``), or ``None``: no listing.
    :param listed: the recordings the listing should answer (those it misses are then fetched).
    :param fetched: the recordings fetched one by one.
    """

    window_start: float | None
    listed: tuple[str, ...]
    fetched: tuple[str, ...]


class PollLedger:
    """What one shared poll has learned of its account, and the requests its listings saved (see the module).

    :param page_size: recordings per list page.
    """

    def __init__(self, page_size: int = PAGE_SIZE) -> None:
        self.page_size = page_size
        self.balance = 0
        self.first_listing_allowed = True
        self.refused: str | None = None  # why the service refused a listing: the poll fetches from then on
        self._created: array[float] = array("d")  # creation times the last listing held, sorted
        self._listed_from: float | None = None
        self._listed_at = 0.0
        self._cut_after: int | None = None  # pages read, when the last listing was cut short

    @property
    def allowance(self) -> int:
        """Requests a listing may cost beyond the GETs it saves: the balance, plus one before any loss."""
        return self.balance + (1 if self.first_listing_allowed else 0)

    def plan(self, due: Mapping[str, float | None], now: float) -> Plan:
        """The cheaper way to look at ``due`` (recording sid -> creation time, or a guess of it; ``None``:
        not known, so fetched). A recording missing from the listing is fetched by the caller.

        :param now: Unix time.
        """
        known = sorted((created, sid) for sid, created in due.items() if created is not None)
        unknown = tuple(sid for sid, created in due.items() if created is None)
        every_one = Plan(None, (), tuple(due))
        if self.refused is not None or len(known) < MIN_LISTED or self.allowance < 1:
            return every_one
        best_cost, best_start = float(len(due)), None
        first = 0  # recordings created before what the last listing covered are fetched (nothing is known)
        if self._listed_from is not None and now - self._listed_at <= STALE_AFTER:
            first = bisect_left(known, (self._listed_from, ""))
        for start in range(first, len(known)):
            created = known[start][0]
            # Starting later fetches one more recording and saves pages only at page boundaries: stop as soon
            # as even a one-page listing could no longer be cheaper.
            if len(known) - start < MIN_LISTED or start + len(unknown) + 1 >= best_cost:
                break
            cost = start + len(unknown) + self.pages_from(created, now)
            if cost < best_cost:
                best_cost, best_start = cost, start
        if best_start is None:
            return every_one
        older = tuple(sid for _, sid in known[:best_start])
        listed = tuple(sid for _, sid in known[best_start:])
        return Plan(math.floor(known[best_start][0]), listed, older + unknown)

    def pages_from(self, start: float, now: float) -> float:
        """The pages a listing from ``start`` (Unix time) would take, by the last listing and the rate of
        new recordings since; one when nothing (recent) is known (a look), infinite for a start before
        the last listing's (nothing is known of that time)."""
        if self._listed_from is None or now - self._listed_at > STALE_AFTER:
            return 1.0
        if start < self._listed_from:
            return math.inf
        created = self._created
        if self._cut_after is not None:
            # Cut short: what it read covers part of the window only. As dense over the whole window, from
            # ``start`` to now, and at least one page more than it read.
            covered = created[-1] - created[0] if len(created) > 1 else 0.0
            density = len(created) / covered if covered > 0 else math.inf
            expected = density * max(0.0, now - start)
            return float(max(self._cut_after + 1, math.ceil(min(expected, 1e12) / self.page_size)))
        count = len(created) - bisect_left(created, start)
        rate = 0.0
        if created:
            rate = (len(created) - bisect_left(created, created[-1] - RATE_WINDOW)) / RATE_WINDOW
        expected = count + rate * max(0.0, now - self._listed_at)
        return float(max(1, math.ceil(expected / self.page_size)))

    def may_read_page(self, pages_read: int, answered: int) -> bool:
        """Whether a listing may read one more page: it must not cost more than the GETs it replaces, even
        if that page answers none of the waits.

        :param pages_read: pages read so far.
        :param answered: due waits the pages read so far answered.
        """
        return pages_read + 1 - answered <= self.allowance

    def record_listing(
        self, window_start: float, created: Iterable[float], pages: int, complete: bool, now: float
    ) -> None:
        """Keep what a listing held.

        :param window_start: Unix time it started at.
        :param created: the creation times of every recording it listed.
        :param pages: the pages it read.
        :param complete: whether it read every page (else it was cut short as not worth it).
        :param now: Unix time.
        """
        self._created = array("d", sorted(created))
        self._listed_from = window_start
        self._listed_at = now
        self._cut_after = None if complete else pages

    def settle(self, answered: int, pages: int) -> None:
        """Count a listing: ``answered`` due waits for ``pages`` requests."""
        self.balance += answered - pages
        if self.balance < 0:  # the one request risked before anything was known is spent
            self.first_listing_allowed = False
