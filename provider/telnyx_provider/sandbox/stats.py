"""Counters of what the sandbox served, for tests and benchmarks to assert on."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

FAULT_KINDS = ("429", "500", "503", "reset", "slow")  # the default random set
# Deterministic kinds, for inject() or faults=. ``slow_after``: carried out, then the reply held slow_seconds.
EXTRA_FAULT_KINDS = ("504", "reset_before", "reset_after", "slow_after")
ALL_FAULT_KINDS = FAULT_KINDS + EXTRA_FAULT_KINDS


class Stats:
    """Thread-safe request, connection, fault and callback counters (one lock, tiny critical sections)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._routes: Counter[str] = Counter()
        self._gets: Counter[str] = Counter()
        self._listed: Counter[str] = Counter()
        self._updates: Counter[str] = Counter()
        self._faults: Counter[str] = Counter({kind: 0 for kind in ALL_FAULT_KINDS})
        self._resets_after = 0
        self._connections = 0
        self._callbacks_sent = 0
        self._callbacks_failed = 0
        self._callbacks_by_recording: Counter[str] = Counter()
        self._callbacks_replayed = 0
        self._media_requests = 0
        self._media_with_auth = 0
        self._media_faults: Counter[str] = Counter({kind: 0 for kind in ("cut", "403", "404", "redirect")})

    def request(self, route_key: str, recording_sid: str | None = None) -> None:
        """Count one request to an API route (faulted and refused ones included).

        :param route_key: e.g. ``"GET /Recordings/{sid}"``.
        :param recording_sid: for a single-recording GET, the sid to count in ``gets_per_recording``; for
            an update (pause, resume, stop: a ``POST``), the sid to count in ``updates_per_recording``.
        """
        with self._lock:
            self._routes[route_key] += 1
            if recording_sid is not None:
                (self._updates if route_key.startswith("POST") else self._gets)[recording_sid] += 1

    def listed(self, recording_sids: list[str]) -> None:
        """Count the recordings one list page served (each in ``listings_per_recording``)."""
        with self._lock:
            self._listed.update(recording_sids)

    def fault(self, kind: str, after_handling: bool = False) -> None:
        """Count one injected fault.

        :param kind: one of ``ALL_FAULT_KINDS``.
        :param after_handling: a reset sent after the request was carried out (reply lost).
        """
        with self._lock:
            self._faults[kind] += 1
            self._resets_after += after_handling

    def connection(self) -> None:
        """Count one accepted TCP connection."""
        with self._lock:
            self._connections += 1

    def callback(self, ok: bool, recording_sid: str | None = None, replay: bool = False) -> None:
        """Count one status callback delivery attempt.

        :param ok: whether the receiver answered with a non-error status.
        :param recording_sid: the recording it was about, counted in ``callbacks_by_recording``.
        :param replay: whether it was a replay of an earlier callback.
        """
        with self._lock:
            if recording_sid is not None:
                self._callbacks_by_recording[recording_sid] += 1
            self._callbacks_replayed += replay
            if ok:
                self._callbacks_sent += 1
            else:
                self._callbacks_failed += 1

    def media_request(self, with_auth: bool) -> None:
        """Count one media request.

        :param with_auth: whether it carried an ``Authorization`` header (a client leaking its API key).
        """
        with self._lock:
            self._media_requests += 1
            self._media_with_auth += with_auth

    def media_fault(self, kind: str) -> None:
        """Count one media fault: ``cut``, ``403``, ``404`` or ``redirect``."""
        with self._lock:
            self._media_faults[kind] += 1

    def snapshot(self) -> dict[str, Any]:
        """Return a copy of all counters as plain JSON-serialisable values."""
        with self._lock:
            return {
                "requests_by_route": dict(self._routes),
                "requests_total": sum(self._routes.values()),
                "gets_per_recording": dict(self._gets),
                "listings_per_recording": dict(self._listed),
                "updates_per_recording": dict(self._updates),
                "connections_accepted": self._connections,
                "faults_injected": dict(self._faults),
                "resets_after_handling": self._resets_after,
                "callbacks_sent": self._callbacks_sent,
                "callbacks_failed": self._callbacks_failed,
                "callbacks_by_recording": dict(self._callbacks_by_recording),
                "callbacks_replayed": self._callbacks_replayed,
                "media_requests": self._media_requests,
                "media_requests_with_auth": self._media_with_auth,
                "media_faults_injected": dict(self._media_faults),
            }
