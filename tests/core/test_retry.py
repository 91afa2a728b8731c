"""Unit tests for telnyx_provider.retry: what is retried, how long to wait, and the tenacity policy.

Nothing sleeps: tenacity's ``sleep`` argument records each wait instead. Retries are counted from the
outside, from the one warning each retry logs (its ``telnyx_retry`` extra: reason, wait, asked).
"""

from __future__ import annotations

import dataclasses
import logging
from email.utils import formatdate

import pytest
from tenacity import Retrying

from telnyx_provider.errors import TelnyxApiError
from telnyx_provider.retry import RetryPolicy, is_retryable, requested_wait

NOW = 1_700_000_000.0  # a fixed "now" (Unix time, November 2023)


def api_error(status=503, **headers):
    return TelnyxApiError(status=status, method="GET", path="/x", detail="boom", headers=headers)


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504, None])
def test_transient_failures_are_retryable(status):
    assert is_retryable(api_error(status)) is True


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
def test_client_errors_are_not_retryable(status):
    assert is_retryable(api_error(status)) is False


@pytest.mark.parametrize("error", [ValueError("x"), KeyError("sid"), ConnectionError("reset"), Exception()])
def test_other_exceptions_are_not_retryable(error):
    assert is_retryable(error) is False


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": "0"}, 0.0),
        ({"retry-after": " 2.5 "}, 2.5),
        ({"retry-after": "-3"}, 0.0),
        ({"retry-after": formatdate(NOW + 30, usegmt=True)}, 30.0),  # HTTP date, 30 s from now
        ({"retry-after": formatdate(NOW - 30, usegmt=True)}, 0.0),  # already past
        ({"x-ratelimit-reset": "12"}, 12.0),  # seconds from now
        ({"x-ratelimit-reset": str(int(NOW) + 20)}, 20.0),  # an epoch time
        ({"x-ratelimit-reset": str(int(NOW) - 20)}, 0.0),
        ({"retry-after": "soon", "x-ratelimit-reset": "4"}, 4.0),  # unreadable Retry-After falls through
        ({"retry-after": "5", "x-ratelimit-reset": "40"}, 5.0),  # Retry-After wins
    ],
)
def test_requested_wait(headers, wait):
    assert requested_wait(api_error(429, **headers), now=NOW) == pytest.approx(wait)


@pytest.mark.parametrize(
    "error",
    [
        api_error(429),
        api_error(429, **{"retry-after": "soon"}),
        api_error(429, **{"x-ratelimit-reset": "later"}),
        api_error(429, **{"x-ratelimit-limit": "100"}),
        ValueError("not an API error"),
    ],
)
def test_requested_wait_is_none_when_not_asked(error):
    assert requested_wait(error, now=NOW) is None


def flaky(failures, make_error=api_error):
    """A function failing ``failures`` times with ``make_error()``, then returning "ok"; and its call list."""
    calls = []

    def call():
        calls.append(len(calls) + 1)
        if len(calls) <= failures:
            raise make_error()
        return "ok"

    return call, calls


@pytest.fixture
def logged(caplog):
    """``logged()``: the ``telnyx_retry`` extra of every retry warning logged so far."""
    caplog.set_level(logging.WARNING, logger="telnyx_provider.retry")

    def extras():
        return [r.telnyx_retry for r in caplog.records if r.name == "telnyx_provider.retry"]

    return extras


def run(policy, function):
    slept = []
    result = Retrying(sleep=slept.append, **policy.tenacity_kwargs("GET /x"))(function)
    return result, slept


@pytest.mark.parametrize("failures", [0, 1, 3])
def test_retries_until_success(failures, logged):
    function, calls = flaky(failures)
    policy = RetryPolicy(max_retries=5, max_wait=0.25)
    result, slept = run(policy, function)
    assert result == "ok"
    assert len(calls) == failures + 1
    assert len(slept) == failures
    retries = logged()
    assert len(retries) == failures  # one warning per retry
    assert [retry["wait"] for retry in retries] == pytest.approx(slept)  # the wait logged is the wait made
    assert all(retry == {"reason": "HTTP 503", "wait": retry["wait"], "asked": False} for retry in retries)


@pytest.mark.parametrize("status", [400, 401, 404, 422])
def test_client_error_is_raised_after_one_attempt(status):
    function, calls = flaky(1, lambda: api_error(status))
    with pytest.raises(TelnyxApiError) as caught:
        run(RetryPolicy(), function)
    assert caught.value.status == status  # the error itself, not a tenacity RetryError
    assert len(calls) == 1


def test_other_exceptions_are_not_retried():
    function, calls = flaky(1, lambda: KeyError("sid"))
    with pytest.raises(KeyError):
        run(RetryPolicy(), function)
    assert len(calls) == 1


@pytest.mark.parametrize("max_retries", [0, 1, 4])
def test_max_retries_bounds_the_attempts(max_retries, logged):
    function, calls = flaky(100)
    policy = RetryPolicy(max_retries=max_retries, max_wait=0.01)
    with pytest.raises(TelnyxApiError) as caught:
        run(policy, function)
    assert caught.value.status == 503
    assert len(calls) == max_retries + 1
    assert len(logged()) == max_retries


@pytest.mark.parametrize(("max_wait", "initial_wait"), [(0.25, 0.5), (1.0, 0.5), (3.0, 0.1)])
def test_backoff_waits_never_exceed_max_wait(max_wait, initial_wait, logged):
    function, _ = flaky(12)
    policy = RetryPolicy(max_retries=12, max_wait=max_wait, initial_wait=initial_wait, budget=1000)
    _, slept = run(policy, function)
    assert len(slept) == 12
    assert all(0 <= wait <= max_wait for wait in slept)
    assert [retry["asked"] for retry in logged()] == [False] * 12  # nothing was asked for


@pytest.mark.parametrize(("retry_after", "wait"), [("7", 7.0), ("0", 0.0), ("45", 45.0)])
def test_retry_after_is_honoured_even_above_max_wait(retry_after, wait, logged):
    function, _ = flaky(2, lambda: api_error(429, **{"retry-after": retry_after}))
    policy = RetryPolicy(max_retries=5, max_wait=1.0, budget=100)
    result, slept = run(policy, function)
    assert result == "ok"
    assert slept == [wait, wait]
    assert logged() == [{"reason": "HTTP 429", "wait": wait, "asked": True}] * 2


def test_a_wait_beyond_the_budget_stops_at_once(logged):
    function, calls = flaky(1, lambda: api_error(503, **{"retry-after": "10"}))
    policy = RetryPolicy(max_retries=8, budget=5)
    with pytest.raises(TelnyxApiError) as caught:
        run(policy, function)
    assert caught.value.headers == {"retry-after": "10"}
    assert len(calls) == 1
    assert logged() == []  # no retry, so no retry warning


def test_the_policy_holds_settings_only():
    # Counting retries is the caller's business (from the logged warnings): the policy is plain settings.
    policy = RetryPolicy(max_retries=3, max_wait=0.01)
    for _ in range(2):
        run(policy, flaky(2)[0])
    assert policy == RetryPolicy(max_retries=3, max_wait=0.01)
    settings = {"max_retries", "max_wait", "budget", "initial_wait"}
    assert {field.name for field in dataclasses.fields(policy)} == settings


def test_each_retry_logs_one_warning_with_status_and_wait(caplog):
    caplog.set_level(logging.DEBUG, logger="telnyx_provider.retry")
    function, _ = flaky(3, lambda: api_error(503, **{"retry-after": "7"}))
    run(RetryPolicy(max_retries=5, budget=100), function)
    records = [record for record in caplog.records if record.name == "telnyx_provider.retry"]
    assert [record.levelno for record in records] == [logging.WARNING] * 3
    for number, record in enumerate(records, start=1):
        message = record.getMessage()
        assert "GET /x" in message
        assert "HTTP 503" in message
        assert "7.00 s" in message
        assert f"retry {number} of 5" in message


def test_transport_failure_warning_says_no_reply(caplog):
    caplog.set_level(logging.WARNING, logger="telnyx_provider.retry")
    error = TelnyxApiError(status=None, method="GET", path="/x", detail="ConnectTimeout: timed out")
    function, calls = flaky(1, lambda: error)
    result, _ = run(RetryPolicy(max_retries=2, max_wait=0.01), function)
    assert result == "ok"
    assert len(calls) == 2
    [record] = [record for record in caplog.records if record.name == "telnyx_provider.retry"]
    assert "no reply" in record.getMessage()
    assert "ConnectTimeout" in record.getMessage()
