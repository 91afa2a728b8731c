"""Fault injection for the sandbox's API routes: rate limits, server errors, dropped connections, slowness."""

from __future__ import annotations

import random
import threading
from typing import TYPE_CHECKING

from telnyx_provider.sandbox.errors import (
    CODE_SERVICE_UNAVAILABLE,
    CODE_TOO_MANY_REQUESTS,
    CODE_UNEXPECTED,
    ApiError,
)
from telnyx_provider.sandbox.stats import FAULT_KINDS

if TYPE_CHECKING:
    from collections.abc import Iterable

RATE_LIMIT = "100"  # x-ratelimit-limit reported with injected 429s


def validate_faults(faults: Iterable[str]) -> tuple[str, ...]:
    """Return the fault kinds as a tuple, refusing unknown ones.

    :param faults: kinds among ``429``, ``500``, ``503``, ``reset``, ``slow``.
    :raises ValueError: for an unknown kind.
    """
    kinds = tuple(str(kind).strip() for kind in faults)
    unknown = [kind for kind in kinds if kind not in FAULT_KINDS]
    if unknown:
        raise ValueError(f"Unknown fault kind(s) {unknown}; choose among {', '.join(FAULT_KINDS)}")
    return kinds


def validate_rate(fault_rate: float) -> float:
    """Return ``fault_rate`` if it is a fraction in [0, 1].

    :param fault_rate: the fraction of API requests to fault.
    :raises ValueError: outside [0, 1].
    """
    if not 0.0 <= fault_rate <= 1.0:
        raise ValueError(f"fault_rate must be between 0 and 1, got {fault_rate}")
    return float(fault_rate)


class FaultInjector:
    """Decides, reproducibly from ``seed``, which API requests get which fault.

    :param fault_rate: fraction of API requests that get a fault.
    :param faults: kinds to choose from, uniformly.
    :param seed: seed of the random generator (None: unseeded).
    :param retry_after: seconds an injected 429 asks the client to wait.
    :param slow_seconds: delay of a ``slow`` reply.
    """

    def __init__(
        self,
        fault_rate: float = 0.0,
        faults: Iterable[str] = FAULT_KINDS,
        seed: int | None = None,
        retry_after: int = 1,
        slow_seconds: float = 1.0,
    ) -> None:
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self.fault_rate = validate_rate(fault_rate)
        self.faults = validate_faults(faults)
        self.retry_after = retry_after
        self.slow_seconds = slow_seconds

    def configure(self, fault_rate: float, faults: Iterable[str] | None = None) -> None:
        """Change the fault rate and, unless ``faults`` is None, the kinds, while the server runs.

        :param fault_rate: new fraction of faulted requests.
        :param faults: new kinds, or None to keep the current ones.
        :raises ValueError: for a rate outside [0, 1] or an unknown kind.
        """
        rate = validate_rate(fault_rate)
        kinds = self.faults if faults is None else validate_faults(faults)
        with self._lock:
            self.fault_rate, self.faults = rate, kinds

    def draw(self) -> tuple[str | None, bool]:
        """Decide the fault of one API request.

        :return: the fault kind or None, and for ``reset`` whether to drop the connection after carrying the
            request out (half the time) rather than before.
        """
        with self._lock:
            if not self.faults or self.fault_rate <= 0.0 or self._random.random() >= self.fault_rate:
                return None, False
            kind = self._random.choice(self.faults)
            return kind, kind == "reset" and self._random.random() < 0.5

    def error_for(self, kind: str) -> ApiError | None:
        """Return the error reply of a ``429``/``500``/``503`` fault, None for other kinds.

        :param kind: the fault kind.
        """
        if kind == "429":
            wait = str(self.retry_after)
            headers = {
                "Retry-After": wait,
                "x-ratelimit-limit": RATE_LIMIT,
                "x-ratelimit-remaining": "0",
                "x-ratelimit-reset": wait,
            }
            return ApiError(
                429,
                CODE_TOO_MANY_REQUESTS,
                "Too many requests",
                f"Rate limit exceeded; retry after {wait} s (sandbox fault)",
                headers,
            )
        if kind == "500":
            return ApiError(500, CODE_UNEXPECTED, "Unexpected error", "Injected server error (sandbox fault)")
        if kind == "503":
            return ApiError(
                503,
                CODE_SERVICE_UNAVAILABLE,
                "Service unavailable",
                "Injected unavailability (sandbox fault)",
            )
        return None
