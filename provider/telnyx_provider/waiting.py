"""What the sensor and the operator share when they wait for a recording.

One look at a recording (:func:`check_recording`), reading a trigger's event back
(:func:`recording_from_event`), telling values known at parse time from those resolved only at run time
(:func:`~telnyx_provider.params.is_unresolved`), and the ``[operators] default_deferrable`` setting.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from telnyx_provider._compat import AirflowException, AirflowSensorTimeout
from telnyx_provider.errors import RecordingFailedError, TelnyxApiError, TelnyxValidationError
from telnyx_provider.models import Verdict, assess_recording
from telnyx_provider.params import has_template as has_template  # re-exported for the operators
from telnyx_provider.params import is_unresolved as is_unresolved
from telnyx_provider.retry import failure_reason, is_retryable, requested_wait

if TYPE_CHECKING:
    import logging
    from collections.abc import Mapping

    from telnyx_provider.hooks.recording import RecordingHook
    from telnyx_provider.retry import RetryPolicy

#: Extra time given to Airflow's own deferral timeout, so the trigger's deadline (which lets us clean up)
#: always fires first.
DEFERRAL_MARGIN = timedelta(minutes=5)


def default_deferrable() -> bool:
    """``[operators] default_deferrable``, as Airflow's own providers read it."""
    try:  # Airflow 3.2+
        from airflow.sdk import conf
    except ImportError:  # pragma: no cover - Airflow 3.1
        from airflow.configuration import conf  # type: ignore[assignment]

    return bool(conf.getboolean("operators", "default_deferrable", fallback=False))


#: Why an argument that is not templated cannot take a value known only at run time.
_NOT_TEMPLATED = (
    "a value given in the DAG file: this argument is not templated, so a value from another task (XComArg) "
    "or a Jinja template would never be resolved; give it through .expand(...) to take it from a task"
)


def retry_overrides(
    max_retries: int | None, retry_max_wait: float | None, retry_budget: float | None
) -> dict[str, Any]:
    """The hook's retry keyword arguments, checked at DAG-parse time rather than at the first request."""
    from telnyx_provider.retry import RetryPolicy

    given = {"max_retries": max_retries, "retry_max_wait": retry_max_wait, "retry_budget": retry_budget}
    for argument, value in given.items():
        if value is not None and is_unresolved(value):
            raise TelnyxValidationError(argument, value, _NOT_TEMPLATED)
    RetryPolicy().replace(max_retries=max_retries, max_wait=retry_max_wait, budget=retry_budget)
    return given


def require_seconds(argument: str, value: object, *, allow_zero: bool = False) -> float:
    """A duration argument (a number of seconds or a ``timedelta``) in seconds, or a clear error.

    Refused: values known only at run time (XComArg, templates: these arguments are not templated), booleans,
    anything else that is not a number or a ``timedelta``, NaN, negative durations and, unless
    ``allow_zero``, zero.

    :param argument: the argument's name, for the error.
    :param value: the value given.
    :param allow_zero: whether 0 is a valid duration.
    :raises TelnyxValidationError: naming the argument, the value and what is expected.
    """
    if is_unresolved(value):
        raise TelnyxValidationError(argument, value, _NOT_TEMPLATED)
    expected = "0 or more seconds" if allow_zero else "a number of seconds greater than 0"
    expected += " (or a timedelta)"
    if isinstance(value, bool) or not isinstance(value, int | float | timedelta):
        raise TelnyxValidationError(argument, value, expected)
    number = seconds(value)
    if not (number >= 0 if allow_zero else number > 0):  # NaN fails both
        raise TelnyxValidationError(argument, value, expected)
    return number


def check_literal_arguments(kwargs: Mapping[str, Any], durations: Mapping[str, bool]) -> None:
    """Check the duration and retry arguments a ``.partial()`` was given, as ``__init__`` would.

    ``.partial()`` stores its arguments until the task runs, and its values are never resolved (only
    ``.expand()`` ones are), so a value that ``__init__`` would refuse fails when the DAG is parsed.

    :param kwargs: the arguments given to ``.partial()``.
    :param durations: duration argument name -> whether 0 is allowed; ``None`` values are left alone.
    """
    for argument, allow_zero in durations.items():
        if kwargs.get(argument) is not None:
            require_seconds(argument, kwargs[argument], allow_zero=allow_zero)
    retry_overrides(kwargs.get("max_retries"), kwargs.get("retry_max_wait"), kwargs.get("retry_budget"))


def task_timeout_error() -> type[BaseException]:
    """Airflow's ``AirflowTaskTimeout`` (``execution_timeout`` reached), where this Airflow keeps it."""
    try:  # Airflow 3.2+
        from airflow.sdk.exceptions import AirflowTaskTimeout
    except ImportError:  # pragma: no cover - Airflow 3.1
        from airflow.exceptions import AirflowTaskTimeout  # type: ignore[no-redef]
    return AirflowTaskTimeout


#: What a deferred wait's deadline came from, when it was the task's ``execution_timeout``.
EXECUTION_TIMEOUT = "execution_timeout"


def deferred_deadline(
    wait_deadline: float | None, execution_timeout: timedelta | None, started: float
) -> tuple[float | None, str | None]:
    """The deadline a deferred wait carries into its trigger, and ``"execution_timeout"`` if that set it.

    Airflow 3.3 does not apply a task's ``execution_timeout`` while the task is deferred (only the timeout
    given to ``defer()`` counts), so a wait carries it itself: its deadline is the earlier of its own
    ``timeout`` and ``execution_timeout`` after ``started`` (Unix time ``execute`` began, where Airflow's own
    timer starts: the start request or the first look already used part of it).
    """
    if execution_timeout is None:
        return wait_deadline, None
    task_deadline = started + execution_timeout.total_seconds()
    if wait_deadline is None or task_deadline < wait_deadline:
        return task_deadline, EXECUTION_TIMEOUT
    return wait_deadline, None


def deferral_timeout(deadline: float | None) -> timedelta | None:
    """The timeout given to ``defer()``: past the trigger's deadline, so the trigger's timeout fires first."""
    return None if deadline is None else timedelta(seconds=max(0.0, deadline - time.time())) + DEFERRAL_MARGIN


def execution_timeout_reason(execution_timeout: timedelta | None) -> str:
    """Why a deferred wait ended at its task's ``execution_timeout``, for the task log and the error."""
    return f"the task's execution_timeout ({execution_timeout}) was reached while it was deferred"


def execution_timeout_error(message: str) -> BaseException:
    """The error of a deferred wait ended by the task's ``execution_timeout``: Airflow's own timeout."""
    return task_timeout_error()(message)


def seconds(value: float | timedelta) -> float:
    """A duration given as seconds or as a ``timedelta``, in seconds."""
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def check_recording(
    hook: RecordingHook,
    recording_sid: str,
    *,
    account_sid: str | None,
    not_found_until: float | None,
    log: logging.Logger | Any,
    deadline: float | None = None,
) -> dict[str, Any] | None:
    """Look at the recording once: the final recording, ``None`` to keep waiting, or an error.

    A 404 before ``not_found_until`` (Unix time) means the recording is not visible yet; after it, the
    404 is raised. ``absent``/``failed``/``deleted`` raise
    :class:`~telnyx_provider.errors.RecordingFailedError`.

    A retryable failure (429, 5xx, no reply) that outlasts the request's retry budget does not end the wait:
    it is logged and ``None`` is returned (after waiting what the service asked, within the deadline). Only
    replies that will not change (401, 403, 422, a 404 after the grace period, a failed TLS verification)
    are raised.

    :param deadline: Unix time the wait ends; the look's retry budget is capped at the time left, so the
        wait overruns it by one request timeout at most.
    """
    try:
        recording = hook.get_recording(
            recording_sid, account_sid=account_sid, retry_policy=_capped_policy(hook, deadline)
        )
    except TelnyxApiError as error:
        if error.status == 404 and not_found_until is not None and time.time() < not_found_until:
            log.info("Recording %s is not visible yet (HTTP 404); still waiting.", recording_sid)
            return None
        if not is_retryable(error):
            raise
        log.warning(
            "Telnyx did not answer the look at recording %s (%s) within its retry budget; still waiting.",
            recording_sid,
            failure_reason(error),
        )
        asked = requested_wait(error) or 0.0
        if deadline is not None:
            asked = min(asked, max(0.0, deadline - time.time()))
        if asked > 0:
            log.info("Waiting %.1f s before the next look, as Telnyx asked.", asked)
            time.sleep(asked)
        return None
    assessment = assess_recording(recording)
    if assessment.verdict is Verdict.DONE:
        log.info("%s", assessment.reason)
        return recording
    if assessment.verdict is Verdict.FAIL:
        raise RecordingFailedError(assessment.reason)
    if assessment.unknown_status:
        log.warning("%s", assessment.reason)
    else:
        log.info("%s", assessment.reason)
    return None


#: Shortest retry budget of a look at (or past) the deadline: one attempt, no retry.
MIN_LOOK_BUDGET = 0.001


def _capped_policy(hook: RecordingHook, deadline: float | None) -> RetryPolicy | None:
    """The hook's retry policy with its budget capped at the time left, or ``None`` if the budget fits."""
    if deadline is None:
        return None
    policy = hook.retry_policy
    left = deadline - time.time()
    return None if left >= policy.budget else policy.replace(budget=max(left, MIN_LOOK_BUDGET))


def recording_from_event(event: object) -> dict[str, Any]:
    """The final recording carried by a trigger's event, or the matching error.

    The trigger is :class:`~telnyx_provider.triggers.recording.RecordingCompletedTrigger`.
    """
    if not isinstance(event, dict) or not isinstance(event.get("status"), str):
        raise AirflowException(f"Unexpected event from the Telnyx recording trigger: {event!r}")
    status, message = event["status"], event.get("message") or "no message"
    if status == "success" and isinstance(event.get("recording"), dict):
        return event["recording"]  # type: ignore[no-any-return]
    if status == "failed":
        raise RecordingFailedError(message)
    if status == "timeout":
        raise AirflowSensorTimeout(message)
    raise AirflowException(f"Waiting for Telnyx recording {event.get('recording_sid')} failed: {message}")
