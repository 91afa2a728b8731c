"""The retry policy, written once and used by the sync hook and the async client alike.

Retries 429, 500, 502, 503, 504 and transport failures (connection errors, resets, timeouts); never
400/401/403/404/422, nor a failed TLS verification. Waits what the service asks (``Retry-After`` in seconds
or as an HTTP date, else ``x-ratelimit-reset``), otherwise exponential backoff with full jitter, capped;
stops when the attempts or the time budget run out. Expressed as tenacity arguments, so ``Retrying`` and
``AsyncRetrying`` get the very same policy.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

from tenacity import (
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_random_exponential,
)

from telnyx_provider.errors import TelnyxApiError, TelnyxValidationError

log = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Transport failures that trying again cannot fix (a refused media link stays refused).
PERMANENT_FAILURES = frozenset({"tls", "refused"})
#: The policy's settings in seconds, by the name users give them (hook arguments, connection extras).
_SECONDS_ARGUMENTS = {"max_wait": "retry_max_wait", "budget": "retry_budget", "initial_wait": "initial_wait"}
_EPOCH_THRESHOLD = 1_000_000_000  # an x-ratelimit-reset this large is a Unix time, not a number of seconds


def is_retryable(error: BaseException) -> bool:
    """Whether a failed request may be tried again: a retryable status, or no reply at all."""
    if not isinstance(error, TelnyxApiError):
        return False
    if error.status is None:
        return error.failure not in PERMANENT_FAILURES
    return error.status in RETRYABLE_STATUSES


def requested_wait(error: BaseException, now: float | None = None) -> float | None:
    """The wait the service asked for in its reply headers, in seconds, if it asked."""
    if not isinstance(error, TelnyxApiError):
        return None
    now = time.time() if now is None else now
    retry_after = error.headers.get("retry-after")
    if retry_after is not None:
        seconds = _finite(retry_after)
        if seconds is not None:
            return max(0.0, seconds)
        try:
            return max(0.0, parsedate_to_datetime(retry_after).timestamp() - now)
        except (TypeError, ValueError, IndexError, OverflowError):
            pass
    reset = error.headers.get("x-ratelimit-reset")
    if reset is not None:
        value = _finite(reset)
        if value is None:
            return None
        return max(0.0, value - now) if value > _EPOCH_THRESHOLD else max(0.0, value)
    return None


def _finite(text: str) -> float | None:
    """A header's number of seconds; ``inf``, ``nan``, ``1e400`` and non-numbers are read as not said."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def failure_reason(error: BaseException | None) -> str:
    """Why a request failed, for logs: ``HTTP 503``, ``no reply (timeout)``..."""
    status = getattr(error, "status", None)
    if status is not None:
        return f"HTTP {status}"
    failure = getattr(error, "failure", None)
    if failure == "rate_limited":
        return "not sent (rate limit)"
    return f"no reply ({failure})" if failure else "no reply"


@dataclass(frozen=True)
class RetryPolicy:
    """How failed requests are retried.

    :param max_retries: retries after the first attempt (0 disables retrying).
    :param max_wait: cap of one backoff wait, in seconds (a wait the service asks for is honoured as is,
        within the budget).
    :param budget: seconds a request may spend in total, waits included, before the last error is raised.
    :param initial_wait: scale of the first backoff wait.
    """

    max_retries: int = 8
    max_wait: float = 30.0
    budget: float = 60.0
    initial_wait: float = 0.5

    def __post_init__(self) -> None:
        retries = self.max_retries
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise TelnyxValidationError("max_retries", self.max_retries, "a whole number >= 0")
        for name, argument in _SECONDS_ARGUMENTS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise TelnyxValidationError(argument, value, "a number of seconds greater than 0")

    def replace(self, **changes: Any) -> RetryPolicy:
        """A copy with some settings changed (``None`` values are ignored)."""
        given = {name: value for name, value in changes.items() if value is not None}
        return dataclasses.replace(self, **given) if given else self

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
            asked = error is not None and requested_wait(error) is not None
            reason = failure_reason(error)
            no_reply = getattr(error, "status", None) is None
            detail = f": {getattr(error, 'detail', error)}" if no_reply else ""
            log.warning(
                "Telnyx %s failed (%s%s); retry %d of %d in %.2f s%s.",
                description,
                reason,
                detail,
                state.attempt_number,
                self.max_retries,
                seconds,
                " as the service asked" if asked else "",
                extra={"telnyx_retry": {"reason": reason, "wait": seconds, "asked": asked}},
            )

        return {
            "retry": retry_if_exception(is_retryable),
            "stop": stop_after_attempt(self.max_retries + 1) | stop_before_delay(self.budget),
            "wait": wait,
            "before_sleep": before_sleep,
            "reraise": True,
        }
