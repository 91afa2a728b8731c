"""RecordingCompletedSensor: wait until a Telnyx recording is final."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

import pendulum
from airflow.sdk import BaseSensorOperator, PokeReturnValue

from telnyx_provider._compat import AirflowFailException, AirflowSensorTimeout, AirflowSkipException
from telnyx_provider.params import require_identifier, resolve_recording
from telnyx_provider.waiting import (
    EXECUTION_TIMEOUT,
    check_literal_arguments,
    check_recording,
    default_deferrable,
    deferral_timeout,
    deferred_deadline,
    execution_timeout_error,
    execution_timeout_reason,
    is_unresolved,
    recording_from_event,
    require_seconds,
    retry_overrides,
    task_timeout_error,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.sdk import Context
    from airflow.sdk.definitions.mappedoperator import OperatorPartial

    from telnyx_provider.hooks.recording import RecordingHook


class RecordingCompletedSensor(BaseSensorOperator):
    """Wait until a recording is final: status ``completed`` *and* a duration.

    ``in-progress``, ``paused`` and ``stopped`` keep waiting (after a hang-up or a stop Telnyx may still
    report them with a null duration while it processes the audio); ``absent``, ``failed`` and ``deleted``
    fail the task without retries; any other status keeps waiting with a warning. A 404 is tolerated for
    ``not_found_grace_period`` after the sensor started, as a new recording may not be visible yet.

    Works in ``poke`` and ``reschedule`` mode and, with ``deferrable=True``, checks once and then waits
    on the triggerer (:class:`~telnyx_provider.triggers.recording.RecordingCompletedTrigger`), polling every
    ``poke_interval`` until ``timeout``; the trigger never stops the recording (the sensor did not start
    it). The final recording is returned and lands in XCom.

    A retryable failure (429, 5xx, no reply) that outlasts one request's retry budget does not end the wait
    in any mode: the sensor keeps looking until ``timeout`` (overrunning it by one request timeout at most).
    ``soft_fail`` turns every failure into a skip as Airflow's sensors do, the first check of a deferrable
    sensor included.

    The target may come from another task (``recording_uri=start.output["recording_uri"]``, a TaskFlow
    call's result, a mapped argument, a template): such values are checked once resolved, before any
    request; literal values (``.partial()`` ones included) are checked when the DAG is parsed.

    :param recording_sid: the recording to wait for; or give ``recording_uri``.
    :param recording_uri: the recording's ``uri`` (call-scoped or account-scoped form), e.g. the ``uri``
        of :class:`~telnyx_provider.operators.recording.StartCallRecordingOperator`'s XCom.
    :param account_sid: the account; taken from the URI, else from the connection's login.
    :param telnyx_conn_id: the Telnyx connection.
    :param not_found_grace_period: how long a 404 means "not visible yet" (seconds or timedelta).
    :param deferrable: wait on the triggerer; defaults to ``[operators] default_deferrable``.
    :param max_retries: retries of each request (default: the connection's ``max_retries``, else 8).
    :param retry_max_wait: cap of one backoff wait, in seconds (default: the connection's, else 30).
    :param retry_budget: seconds one request may take with its retries (default: the connection's, else 60).
    """

    template_fields: Sequence[str] = ("recording_sid", "recording_uri", "account_sid")
    ui_color = "#00c08b"

    def __init__(
        self,
        *,
        recording_sid: str | None = None,
        recording_uri: str | None = None,
        account_sid: str | None = None,
        telnyx_conn_id: str = "telnyx_default",
        not_found_grace_period: float | timedelta = 60.0,
        deferrable: bool | None = None,
        max_retries: int | None = None,
        retry_max_wait: float | None = None,
        retry_budget: float | None = None,
        **kwargs: Any,
    ) -> None:
        # Checked before BaseSensorOperator's own checks, which refuse these with a bare ValueError.
        for name in ("poke_interval", "timeout"):
            if kwargs.get(name) is not None:
                require_seconds(name, kwargs[name])
        super().__init__(**kwargs)
        self.recording_sid = recording_sid
        self.recording_uri = recording_uri
        self.account_sid = account_sid
        self.telnyx_conn_id = telnyx_conn_id
        self.retry_overrides = retry_overrides(max_retries, retry_max_wait, retry_budget)
        self.not_found_grace_period = require_seconds(
            "not_found_grace_period", not_found_grace_period, allow_zero=True
        )
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        require_seconds("poke_interval", self.poke_interval)
        require_seconds("timeout", self.timeout)
        self._resolve_target(validate_only=True)

    @classmethod
    def partial(cls, **kwargs: Any) -> OperatorPartial:
        """Airflow's ``.partial()``, refusing literal values that could never work when the DAG is parsed."""
        for name in ("recording_sid", "account_sid"):
            value = kwargs.get(name)
            if value is not None and not is_unresolved(value):
                require_identifier(name, value)
        uri = kwargs.get("recording_uri")
        if uri is not None and not is_unresolved(uri):
            resolve_recording(None, uri, None, rendered=True)
        check_literal_arguments(kwargs, _DURATIONS)
        return super().partial(**kwargs)

    @cached_property
    def hook(self) -> RecordingHook:
        """The hook, built on first use (never at DAG-parse time)."""
        from telnyx_provider.hooks.recording import RecordingHook

        return RecordingHook(telnyx_conn_id=self.telnyx_conn_id, **self.retry_overrides)

    def execute(self, context: Context) -> Any:
        """Wait for the recording: poke or reschedule through Airflow, or check once and defer."""
        entered = time.time()  # execution_timeout counts from here, as Airflow's own timer does
        target = self._resolve_target()  # values resolved only now are checked before any request
        started = self._wait_started_at(context)
        self._not_found_until = started + self.not_found_grace_period
        self._deadline = started + self.timeout
        if not self.deferrable:
            return super().execute(context)
        recording = self._first_check(*target)
        if recording is not None:
            return recording
        from telnyx_provider.triggers.recording import RecordingCompletedTrigger

        recording_sid, account_sid = target
        now = time.time()
        deadline, timed_out_by = deferred_deadline(now + self.timeout, self.execution_timeout, entered)
        self.defer(
            trigger=RecordingCompletedTrigger(
                recording_sid,
                account_sid=account_sid,
                telnyx_conn_id=self.telnyx_conn_id,
                poll_interval=self.poke_interval,
                deadline=deadline,
                not_found_deadline=self._not_found_until,
                stop_on_kill=False,  # the sensor did not start the recording: a kill leaves it alone
                **self.retry_overrides,
            ),
            method_name="execute_complete",
            kwargs={"timed_out_by": timed_out_by},
            timeout=deferral_timeout(deadline),
        )

    def poke(self, context: Context) -> PokeReturnValue:
        """Look at the recording once."""
        recording_sid, account_sid = self._resolve_target()
        recording = check_recording(
            self.hook,
            recording_sid,
            account_sid=account_sid,
            not_found_until=getattr(self, "_not_found_until", None),
            log=self.log,
            deadline=getattr(self, "_deadline", None),
        )
        return PokeReturnValue(is_done=recording is not None, xcom_value=recording)

    def _first_check(self, recording_sid: str, account_sid: str | None) -> dict[str, Any] | None:
        """A deferrable sensor's look before deferring, failing (or skipping) as a poke would."""
        try:
            return check_recording(
                self.hook,
                recording_sid,
                account_sid=account_sid,
                not_found_until=self._not_found_until,
                log=self.log,
                deadline=self._deadline,
            )
        except AirflowSkipException:
            raise
        except (AirflowSensorTimeout, AirflowFailException, task_timeout_error()) as error:
            if self.soft_fail or getattr(self, "never_fail", False):
                raise AirflowSkipException(f"Skipping as soft_fail is set: {error}") from error
            raise
        except Exception as error:
            if getattr(self, "silent_fail", False):
                self.log.error("The first look at recording %s failed: %s", recording_sid, error)
                return None
            if getattr(self, "never_fail", False):
                raise AirflowSkipException(f"Skipping as never_fail is set: {error}") from error
            raise

    def execute_complete(
        self, context: Context, event: dict[str, Any], timed_out_by: str | None = None
    ) -> dict[str, Any]:
        """Called when the trigger fires: return the final recording or raise what went wrong.

        :param timed_out_by: ``"execution_timeout"`` when the trigger's deadline was the task's
            ``execution_timeout`` (which Airflow does not apply to a deferred task).
        """
        if timed_out_by == EXECUTION_TIMEOUT and isinstance(event, dict) and event.get("status") == "timeout":
            sid = event.get("recording_sid")
            why = execution_timeout_reason(self.execution_timeout)
            self.log.warning("Recording %s is left running (this sensor did not start it): %s.", sid, why)
            raise execution_timeout_error(f"Recording {sid} was not final when {why}.")
        recording = recording_from_event(event)
        self.log.info("Recording %s completed (%s s).", recording.get("sid"), recording.get("duration"))
        return recording

    def _wait_started_at(self, context: Context) -> float:
        """Unix time the wait began: the first try's start in reschedule mode, else now."""
        ti = context.get("ti") if self.reschedule else None
        first = ti.get_first_reschedule_date(context) if ti is not None else None
        if isinstance(first, str):  # Airflow 3.1 hands it over as an ISO 8601 string
            first = pendulum.parse(first)
        return first.timestamp() if isinstance(first, datetime) else time.time()

    def _resolve_target(self, *, validate_only: bool = False) -> tuple[str, str | None]:
        """The (recording_sid, account_sid) to poll, from ``recording_sid`` or ``recording_uri``."""
        return resolve_recording(
            self.recording_sid, self.recording_uri, self.account_sid, rendered=not validate_only
        )


#: The duration arguments, and whether each may be 0.
_DURATIONS = {"poke_interval": False, "timeout": False, "not_found_grace_period": True}
