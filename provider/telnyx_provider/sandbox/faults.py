"""Fault injection for the sandbox's API routes: rate limits, server errors, dropped connections, slowness.

Two sources, checked in this order for every API request: scripted one-shot injections
(:meth:`FaultInjector.inject`: the next N requests of one route get one fault) and the random draw
(``fault_rate`` over ``faults``).
The random draw is made for every request, injected or not, so a seed gives the same random sequence whatever
is scripted.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from telnyx_provider.sandbox.errors import (
    CODE_SERVICE_UNAVAILABLE,
    CODE_TOO_MANY_REQUESTS,
    CODE_UNEXPECTED,
    ApiError,
)
from telnyx_provider.sandbox.stats import ALL_FAULT_KINDS, FAULT_KINDS

if TYPE_CHECKING:
    from collections.abc import Iterable

RATE_LIMIT = "100"  # x-ratelimit-limit reported with injected 429s
RESET_KINDS = frozenset({"reset", "reset_before", "reset_after"})
# A gateway timeout is answered after the request was carried out: the service acted, the gateway gave up.
ERRORS_AFTER_HANDLING = frozenset({"504"})


def validate_faults(faults: Iterable[str]) -> tuple[str, ...]:
    """Return the fault kinds as a tuple, refusing unknown ones.

    :param faults: kinds among ``ALL_FAULT_KINDS``.
    :raises ValueError: for an unknown kind.
    """
    kinds = tuple(str(kind).strip() for kind in faults)
    unknown = [kind for kind in kinds if kind not in ALL_FAULT_KINDS]
    if unknown:
        raise ValueError(f"Unknown fault kind(s) {unknown}; choose among {', '.join(ALL_FAULT_KINDS)}")
    return kinds


def validate_rate(fault_rate: float) -> float:
    """Return ``fault_rate`` if it is a fraction in [0, 1].

    :param fault_rate: the fraction of API requests to fault.
    :raises ValueError: outside [0, 1].
    """
    if not 0.0 <= fault_rate <= 1.0:
        raise ValueError(f"fault_rate must be between 0 and 1, got {fault_rate}")
    return float(fault_rate)


@dataclass(slots=True)
class Injection:
    """A scripted fault waiting for the next requests of one route.

    :param route: the route key, e.g. ``"POST /Calls/{call_sid}/Recordings"``.
    :param kind: the fault kind.
    :param remaining: how many more requests it hits.
    :param call_sid: only requests on this call's path, or None for any.
    """

    route: str
    kind: str
    remaining: int
    call_sid: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return the injection as plain JSON values."""
        return {"route": self.route, "kind": self.kind, "count": self.remaining, "call_sid": self.call_sid}


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
        self._scripted: list[Injection] = []
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

    def inject(self, route: str, kind: str, count: int = 1, call_sid: str | None = None) -> None:
        """Give the next ``count`` requests of ``route`` the fault ``kind`` (after earlier injections).

        :param route: a route key (checked by the caller against the API's routes).
        :param kind: a fault kind.
        :param count: how many requests, at least 1.
        :param call_sid: restrict to requests on this call's path.
        :raises ValueError: for an unknown kind or a count below 1.
        """
        (checked,) = validate_faults([kind])
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"count must be an integer >= 1, got {count!r}")
        with self._lock:
            self._scripted.append(Injection(route, checked, count, call_sid))

    def pending(self) -> list[dict[str, Any]]:
        """Return the scripted injections not used up yet, oldest first."""
        with self._lock:
            return [injection.as_dict() for injection in self._scripted]

    def clear(self) -> None:
        """Drop every pending scripted injection."""
        with self._lock:
            self._scripted.clear()

    def decide(self, route: str, call_sid: str | None = None) -> tuple[str | None, bool]:
        """Decide the fault of one API request: a scripted injection first, else the random draw.

        :param route: the request's route key.
        :param call_sid: the call sid in the request's path, if it has one.
        :return: the fault kind or None, and for a reset whether to drop the connection *after* carrying the
            request out (``reset_after``; ``reset`` half the time) rather than before.
        """
        with self._lock:
            drawn = self._draw()
            for index, injection in enumerate(self._scripted):
                if injection.route == route and injection.call_sid in (None, call_sid):
                    injection.remaining -= 1
                    if injection.remaining <= 0:
                        del self._scripted[index]
                    return injection.kind, injection.kind == "reset_after"
            return drawn

    def draw(self) -> tuple[str | None, bool]:
        """Make the random draw of one request, scripted injections aside (see :meth:`decide`).

        :return: the fault kind or None, and for a reset whether it comes after the request is carried out.
        """
        with self._lock:
            return self._draw()

    def _draw(self) -> tuple[str | None, bool]:
        if not self.faults or self.fault_rate <= 0.0 or self._random.random() >= self.fault_rate:
            return None, False
        kind = self._random.choice(self.faults)
        if kind == "reset":
            return kind, self._random.random() < 0.5
        return kind, kind == "reset_after"

    def error_for(self, kind: str) -> ApiError | None:
        """Return the error reply of a ``429``/``500``/``503``/``504`` fault, None for other kinds.

        The first three are answered instead of carrying the request out; a ``504`` is answered after it
        (``ERRORS_AFTER_HANDLING``).

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
        if kind == "504":
            return ApiError(
                504,
                CODE_UNEXPECTED,
                "Gateway timeout",
                "The upstream service did not answer in time; the request may or may not have been "
                "carried out (sandbox fault)",
            )
        return None
