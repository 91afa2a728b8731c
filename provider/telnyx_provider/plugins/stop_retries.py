"""Stops the API server's kill listener could not send in time, sent again in the background.

The listener (:mod:`telnyx_provider.plugins.kill_listener`) stops a deferred wait's recording inside the
user's request, with a budget of a few seconds. When Telnyx does not answer within it (an outage, a rate
limit), the recording would go on until the call ends: the trigger's own ``on_kill`` runs only if a triggerer
had picked the trigger up, and tries once more at best. So the stop is handed to a :class:`StopRetrier`: a
thread of the API-server worker that looks at the recording and stops it if it is still live, again and
again (:data:`RETRY_DELAYS`), for up to :data:`RETRY_WINDOW` seconds, logging each failure and, at the end,
an error that says how to stop the recording by hand. The pending stops live in the worker's memory: a
restart of the API server forgets them (each was logged as an error first).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from telnyx_provider.errors import TelnyxApiError
from telnyx_provider.retry import is_retryable

if TYPE_CHECKING:
    from collections.abc import Sequence

log = logging.getLogger(__name__)

#: Seconds between two background tries of one stop (the last one repeats).
RETRY_DELAYS = (2.0, 5.0, 10.0, 30.0)
#: Seconds after the first failure that a stop is still tried.
RETRY_WINDOW = 15 * 60.0
#: Seconds one request of a background try may take.
REQUEST_TIMEOUT = 5.0
#: Statuses of a recording that a stop still changes.
LIVE_STATUSES = frozenset({"in-progress", "paused"})


@dataclass
class PendingStop:
    """A stop the listener could not send.

    :param conn_id: the Telnyx connection of the wait.
    :param call_sid: the call.
    :param recording_sid: the recording.
    :param account_sid: the account (``None``: the connection's login).
    :param why: what ended the task, for the log (``marked failed``).
    """

    conn_id: str
    call_sid: str
    recording_sid: str
    account_sid: str | None
    why: str
    attempts: int = 0
    first_failed: float = field(default_factory=time.monotonic)
    next_try: float = 0.0


class StopRetrier:
    """Sends pending stops again from a thread of its own until they are done or ``window`` is over.

    :param delays: seconds between two tries of one stop (the last one repeats).
    :param window: seconds after its first failure that a stop is still tried.
    """

    def __init__(self, *, delays: Sequence[float] = RETRY_DELAYS, window: float = RETRY_WINDOW) -> None:
        self.delays = tuple(delays)
        self.window = window
        self._pending: list[PendingStop] = []
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._closed = False

    def add(self, stop: PendingStop) -> None:
        """Try ``stop`` again after the first delay (starts the thread if it is not running)."""
        with self._lock:
            stop.next_try = time.monotonic() + self._delay(stop.attempts)
            self._pending.append(stop)
            if self._thread is None or not self._thread.is_alive():
                self._closed = False
                self._thread = threading.Thread(target=self._run, name="telnyx-stop-retries", daemon=True)
                self._thread.start()
            self._wake.notify_all()

    def failing(self, conn_id: str) -> bool:
        """Whether a stop through ``conn_id`` is waiting for the service (it is not answering stops now)."""
        with self._lock:
            return any(stop.conn_id == conn_id for stop in self._pending)

    def close(self) -> None:
        """Forget the pending stops and end the thread."""
        with self._lock:
            self._closed = True
            self._pending.clear()
            self._wake.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(REQUEST_TIMEOUT * 3)

    def _delay(self, attempts: int) -> float:
        return self.delays[min(attempts, len(self.delays) - 1)]

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._closed and self._pending:
                    due = min(stop.next_try for stop in self._pending)
                    if due <= time.monotonic():
                        break
                    self._wake.wait(due - time.monotonic())
                if self._closed or not self._pending:
                    self._thread = None
                    return
                now = time.monotonic()
                ready = [stop for stop in self._pending if stop.next_try <= now]
            for stop in ready:
                done = self._try(stop)
                with self._lock:
                    if self._closed:
                        break
                    if done:
                        self._pending.remove(stop)
                    else:
                        stop.next_try = time.monotonic() + self._delay(stop.attempts)

    def _try(self, stop: PendingStop) -> bool:
        """One look-then-stop; ``True`` once the stop is settled (done, not needed, or given up)."""
        stop.attempts += 1
        try:
            outcome = _look_and_stop(stop)
        except Exception as error:
            if isinstance(error, TelnyxApiError) and not is_retryable(error):
                log.error(
                    "Gave up stopping recording %s on call %s (its deferred task was %s): %s. It records "
                    "until the call ends: stop it with StopCallRecordingOperator or Telnyx's API.",
                    stop.recording_sid,
                    stop.call_sid,
                    stop.why,
                    error,
                )
                return True
            if time.monotonic() - stop.first_failed + self._delay(stop.attempts) > self.window:
                log.error(
                    "Gave up stopping recording %s on call %s (its deferred task was %s) after %d tries over "
                    "%.0f s: %s. It records until the call ends: stop it with StopCallRecordingOperator or "
                    "Telnyx's API.",
                    stop.recording_sid,
                    stop.call_sid,
                    stop.why,
                    stop.attempts,
                    time.monotonic() - stop.first_failed,
                    error,
                )
                return True
            log.warning(
                "Still could not stop recording %s on call %s (try %d): %s; trying again in %g s.",
                stop.recording_sid,
                stop.call_sid,
                stop.attempts,
                error,
                self._delay(stop.attempts),
            )
            return False
        if outcome is None:
            log.warning(
                "Stopped recording %s on call %s: its deferred task was %s (background try %d).",
                stop.recording_sid,
                stop.call_sid,
                stop.why,
                stop.attempts,
            )
        else:
            log.info("Recording %s is already %s; no stop needed.", stop.recording_sid, outcome)
        return True


def _look_and_stop(stop: PendingStop) -> str | None:
    """Stop the recording if it is still live: ``None`` once stopped, else the status it already had."""
    from telnyx_provider.hooks.recording import RecordingHook

    hook = RecordingHook(
        telnyx_conn_id=stop.conn_id,
        max_retries=0,
        retry_budget=REQUEST_TIMEOUT,
        request_timeout=REQUEST_TIMEOUT,
    )
    try:
        recording = hook.get_recording(stop.recording_sid, account_sid=stop.account_sid)
    except TelnyxApiError as error:
        if error.status == 404:
            return "gone (404)"
        raise
    status = recording.get("status")
    if isinstance(status, str) and status not in LIVE_STATUSES:
        return status
    try:
        hook.stop_call_recording(stop.call_sid, stop.recording_sid, account_sid=stop.account_sid)
    except TelnyxApiError as error:
        if error.status == 422:  # it ended between the look and the stop
            return "ended"
        raise
    return None
