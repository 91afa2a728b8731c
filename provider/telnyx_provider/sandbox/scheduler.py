"""A single background thread that runs work when it falls due (a heap of due times)."""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger(__name__)


class DueScheduler:
    """Call ``fire(key)`` once ``key``'s due time has passed; ``fire`` may return a later time to retry at.

    Scheduling a key several times is allowed: ``fire`` must tolerate being called more than once.

    :param fire: called on the scheduler thread with a due key; returns a new due time or None.
    :param clock: returns the current epoch time (the clock the due times are expressed in).
    """

    def __init__(self, fire: Callable[[str], float | None], clock: Callable[[], float] = time.time) -> None:
        self._fire = fire
        self._clock = clock
        self._heap: list[tuple[float, int, str]] = []
        self._order = itertools.count()  # breaks ties so keys are never compared
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the background thread (daemon)."""
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="telnyx-sandbox-scheduler", daemon=True)
        self._thread.start()

    def schedule(self, due: float, key: str) -> None:
        """Ask for ``fire(key)`` at (or soon after) epoch time ``due``.

        :param due: epoch time.
        :param key: what to fire.
        """
        with self._cond:
            heapq.heappush(self._heap, (due, next(self._order), key))
            if self._heap[0][2] == key:  # new earliest entry: wake the thread to shorten its wait
                self._cond.notify()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the thread; pending entries are dropped.

        :param timeout: seconds to wait for the thread to finish.
        """
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _next_due(self) -> str | None:
        with self._cond:
            while not self._stopping:
                if self._heap:
                    wait = self._heap[0][0] - self._clock()
                    if wait <= 0:
                        return heapq.heappop(self._heap)[2]
                    self._cond.wait(wait)
                else:
                    self._cond.wait()
            return None

    def _run(self) -> None:
        while (key := self._next_due()) is not None:
            try:
                again = self._fire(key)
            except Exception:  # one bad entry must not kill the thread that serves all the others
                log.exception("Sandbox scheduler failed on %s", key)
                continue
            if again is not None:
                self.schedule(again, key)
