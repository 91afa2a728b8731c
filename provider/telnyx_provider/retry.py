"""The retry policy, written once and used by the sync hook and the async client alike.

Retries 429, 500, 502, 503, 504 and transport failures (connection errors, resets, timeouts); never
400/401/403/404/422. Waits what the service asks (``Retry-After`` in seconds or as an HTTP date, else
``x-ratelimit-reset``), otherwise exponential backoff with full jitter, capped; stops when the attempts
or the time budget run out. Expressed as tenacity arguments, so ``Retrying`` and ``AsyncRetrying`` get
the very same policy.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

from tenacity import (
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_random_exponential,
)

from telnyx_provider.errors import TelnyxApiError

log = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
_EPOCH_THRESHOLD = 1_000_000_000  # an x-ratelimit-reset this large is a Unix time, not a number of seconds


def is_retryable(error: BaseException) -> bool:
    """Whether a failed request may be tried again: a retryable status, or no reply at all."""
    return isinstance(error, TelnyxApiError) and (error.status is None or error.status in RETRYABLE_STATUSES)


def requested_wait(error: BaseException, now: float | None = None) -> float | None:
    """The wait the service asked for in its reply headers, in seconds, if it asked."""
    if not isinstance(error, TelnyxApiError):
        return None
    now = time.time() if now is None else now
    retry_after = error.headers.get("retry-after")
    if retry_after is not None:
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            try:
                return max(0.0, parsedate_to_datetime(retry_after).timestamp() - now)
            except (TypeError, ValueError, IndexError):
                pass
    reset = error.headers.get("x-ratelimit-reset")
    if reset is not None:
        try:
            value = float(reset)
        except ValueError:
            return None
        return max(0.0, value - now) if value > _EPOCH_THRESHOLD else max(0.0, value)
    return None


@dataclass
class RetryStats:
    """Counters a caller can read after requests: retries made and seconds spent waiting."""

    retries: int = 0
    waited_seconds: float = 0.0
    waited_as_asked_seconds: float = 0.0


@dataclass(frozen=True)
class RetryPolicy:
    """How failed requests are retried.

    :param max_retries: retries after the first attempt (0 disables retrying).
    :param max_wait: cap of one backoff wait, in seconds (a wait the service asks for is honoured as is).
    :param budget: seconds a request may spend in total, waits included, before the last error is raised.
    :param initial_wait: scale of the first backoff wait.
    """

    max_retries: int = 8
    max_wait: float = 30.0
    budget: float = 60.0
    initial_wait: float = 0.5
    stats: RetryStats = field(default_factory=RetryStats, compare=False)

    def tenacity_kwargs(self, description: str) -> dict[str, Any]:
        """Arguments for ``tenacity.Retrying`` / ``tenacity.AsyncRetrying`` applying this policy."""
        backoff = wait_random_exponential(multiplier=self.initial_wait, max=self.max_wait)

        def wait(state: RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome else None
            asked = requested_wait(error) if error is not None else None
            return asked if asked is not None else float(backoff(state))

        def before_sleep(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            seconds = state.upcoming_sleep
            self.stats.retries += 1
            self.stats.waited_seconds += seconds
            if error is not None and requested_wait(error) is not None:
                self.stats.waited_as_asked_seconds += seconds
            status = getattr(error, "status", None)
            log.warning(
                "Telnyx %s failed (%s); retry %d of %d in %.2f s.",
                description,
                f"HTTP {status}" if status is not None else f"no reply: {getattr(error, 'detail', error)}",
                state.attempt_number,
                self.max_retries,
                seconds,
            )

        return {
            "retry": retry_if_exception(is_retryable),
            "stop": stop_after_attempt(self.max_retries + 1) | stop_before_delay(self.budget),
            "wait": wait,
            "before_sleep": before_sleep,
            "reraise": True,
        }
