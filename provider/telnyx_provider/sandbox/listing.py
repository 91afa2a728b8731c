"""Which recordings a list request sees: eventual consistency, the service's clock and the page cap (pure)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from itertools import islice
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Collection

    from telnyx_provider.sandbox.params import Paging
    from telnyx_provider.sandbox.state import Recording


@dataclass(frozen=True, slots=True)
class ListPolicy:
    """How the list endpoints deviate from an ideal, always-current service (all off by default).

    :param list_lag: seconds a new recording stays out of the lists (eventual consistency).
    :param clock_skew: seconds the service's clock is ahead of ours (negative: behind); the ``DateCreated``
        filters are read in the service's clock.
    :param max_page_size: the largest page served, whatever ``PageSize`` asks; None for the spec's limit.
    """

    list_lag: float = 0.0
    clock_skew: float = 0.0
    max_page_size: int | None = None

    def __post_init__(self) -> None:
        if self.list_lag < 0:
            raise ValueError(f"list_lag must be >= 0 seconds, got {self.list_lag}")
        if not math.isfinite(self.clock_skew):
            raise ValueError(f"clock_skew must be a finite number of seconds, got {self.clock_skew}")
        if self.max_page_size is not None and self.max_page_size < 1:
            raise ValueError(f"max_page_size must be >= 1, got {self.max_page_size}")

    def cap(self, paging: Paging) -> Paging:
        """Return ``paging`` with its page size capped at ``max_page_size``.

        :param paging: the requested paging.
        """
        if self.max_page_size is None or paging.page_size <= self.max_page_size:
            return paging
        return replace(paging, page_size=self.max_page_size)

    def select(
        self, recordings: Collection[Recording], paging: Paging, now: float
    ) -> tuple[list[Recording], int]:
        """Return the recordings of the requested page, oldest first, and how many match on all pages.

        :param recordings: the candidates, oldest first.
        :param paging: page (already capped), page size and ``DateCreated`` bounds in the service's clock.
        :param now: the current epoch time (our clock).
        """
        start = paging.page * paging.page_size
        bounded = paging.created_from != -math.inf or paging.created_before != math.inf
        if not bounded and self.list_lag <= 0:
            return list(islice(recordings, start, start + paging.page_size)), len(recordings)
        visible_until, skew = now - self.list_lag, self.clock_skew
        low, high = paging.created_from, paging.created_before
        matching = [
            rec
            for rec in recordings
            if rec.started_at <= visible_until and low <= rec.started_at + skew < high
        ]
        return matching[start : start + paging.page_size], len(matching)
