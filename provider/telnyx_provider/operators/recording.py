"""StartCallRecordingOperator: start recording a live call, and optionally wait for the recording."""

from __future__ import annotations

import time
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from telnyx_provider._compat import AirflowSensorTimeout
from telnyx_provider.links import TelnyxRecordingLink
from telnyx_provider.operators.lifecycle import (
    DeleteRecordingOperator,
    PauseCallRecordingOperator,
    ResumeCallRecordingOperator,
    StopCallRecordingOperator,
)
from telnyx_provider.operators.start_arguments import DURATIONS as _DURATIONS
from telnyx_provider.operators.start_arguments import RECORDING_PARAMETERS as RECORDING_PARAMETERS
from telnyx_provider.operators.start_arguments import VALIDATED as _VALIDATED
from telnyx_provider.operators.start_arguments import validate_start_arguments as validate_start_arguments
from telnyx_provider.operators.start_memory import StartMemory, StartRecord
from telnyx_provider.params import require_positive_number
from telnyx_provider.waiting import (
    EXECUTION_TIMEOUT,
    check_literal_arguments,
    check_recording,
    default_deferrable,
    deferral_timeout,
    deferred_deadline,
    execution_timeout_error,
    execution_timeout_reason,
    recording_from_event,
    require_seconds,
    retry_overrides,
    task_timeout_error,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import timedelta

    from airflow.sdk import Context

    from telnyx_provider.hooks.recording import RecordingHook
    from telnyx_provider.operators.kill_decision import TaskIdentity
    from telnyx_provider.operators.recording_retry import Restart
    from telnyx_provider.operators.start_steps import TaskStart
    from telnyx_provider.params import StartRecordingParams

#: A stop on kill must finish before the task supervisor's SIGKILL follows its SIGTERM.
KILL_STOP_TIMEOUT = 2.0
KILL_STOP_BUDGET = 4.0


class StartCallRecordingOperator(BaseOperator):
    """Start recording a live call (``POST .../Calls/{call_sid}/Recordings.json``); returns the recording.

    Every parameter of the API is an argument, validated before anything is sent: literal values when
    the DAG is parsed (``.partial()`` ones included), templated, XComArg and mapped values once resolved.
    The recording (a plain dict) goes to XCom, and its SID and URI are pushed at once under the keys
    ``recording_sid`` and ``recording_uri`` (before any wait, so a failed wait still says which recording
    it was); they can feed :class:`~telnyx_provider.sensors.recording.RecordingCompletedSensor`.

    With ``wait_for_completion=True`` the operator waits for the final recording itself, polling every
    ``poll_interval`` (holding the worker slot) or, with ``deferrable=True``, on the triggerer. If the wait
    times out (``timeout``) or the task is killed (also while deferred, on Airflow 3.3+), the recording is
    stopped rather than left running.

    Retries are exact (Airflow 3.3+). The start is kept in the task's durable state
    (``context["task_state_store"]``), each step written before it happens: prepared, sending (with its
    start token in exact mode), refused, reply lost, started (the SID), stop requested, stopped (confirmed
    by the service). A retry reads the recording's actual status before acting on a note: a completed
    recording is returned, one still going is waited for, one this task stopped (confirmed) or that failed
    starts a new one, an unconfirmed stop is sent again first; without a SID, a start that may have gone
    through is judged by the ownership rule only (README, *Exactly one recording per start*). Without a task
    state store a retry cannot know what an earlier try started: it refuses rather than guess.

    :param adoption_wait: seconds a start whose reply was lost looks for its own recording (default: the
        connection extra ``adoption_wait``, else 5).
    :param exact_start: ``None``: exact when ``recording_status_callback`` goes to this provider's receiver
        (``.../telnyx/recording-status``); ``True``: required; ``False``: default mode.
    :param call_sid: the live call to record (``v3:...``).
    :param account_sid: the account; the connection's login when ``None``.
    :param play_beep: play a beep when the recording starts.
    :param recording_status_callback: URL Telnyx sends status callbacks to.
    :param recording_status_callback_event: events that trigger a callback: ``in-progress``, ``completed``,
        ``absent``, as a list or a space-separated string; ``None`` means the API default, ``completed``.
    :param recording_status_callback_method: ``GET`` or ``POST``.
    :param recording_channels: ``single`` (mixed) or ``dual`` (one leg per channel).
    :param recording_track: ``inbound``, ``outbound`` or ``both``.
    :param send_recording_url: whether callbacks carry ``RecordingUrl``.
    :param telnyx_conn_id: the Telnyx connection.
    :param wait_for_completion: wait until the recording is final and return that instead.
    :param deferrable: wait on the triggerer; defaults to ``[operators] default_deferrable``.
    :param poll_interval: seconds between two looks at the recording while waiting.
    :param timeout: longest wait, in seconds or as a timedelta (``None``: no limit).
    :param not_found_grace_period: how long a 404 means "not visible yet" while waiting.
    :param max_retries: retries of each request (default: the connection's ``max_retries``, else 8).
    :param retry_max_wait: cap of one backoff wait, in seconds (default: the connection's, else 30).
    :param retry_budget: seconds one request may take with its retries (default: the connection's, else 60).
    """

    template_fields: Sequence[str] = ("call_sid", "account_sid", *RECORDING_PARAMETERS)
    operator_extra_links = (TelnyxRecordingLink(),)
    ui_color = "#00c08b"

    def __init__(
        self,
        *,
        call_sid: str,
        account_sid: str | None = None,
        play_beep: bool | str = True,
        recording_status_callback: str | None = None,
        recording_status_callback_event: str | list[str] | None = None,
        recording_status_callback_method: str = "POST",
        recording_channels: str = "dual",
        recording_track: str = "both",
        send_recording_url: bool | str = True,
        telnyx_conn_id: str = "telnyx_default",
        wait_for_completion: bool = False,
        deferrable: bool | None = None,
        poll_interval: float | timedelta = 10.0,
        timeout: float | timedelta | None = None,
        not_found_grace_period: float | timedelta = 60.0,
        max_retries: int | None = None,
        retry_max_wait: float | None = None,
        retry_budget: float | None = None,
        adoption_wait: float | None = None,
        exact_start: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.call_sid = call_sid
        self.account_sid = account_sid
        self.play_beep = play_beep
        self.recording_status_callback = recording_status_callback
        self.recording_status_callback_event = recording_status_callback_event
        self.recording_status_callback_method = recording_status_callback_method
        self.recording_channels = recording_channels
        self.recording_track = recording_track
        self.send_recording_url = send_recording_url
        self.telnyx_conn_id = telnyx_conn_id
        self.retry_overrides = retry_overrides(max_retries, retry_max_wait, retry_budget)
        self.wait_for_completion = wait_for_completion
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self.poll_interval = require_seconds("poll_interval", poll_interval)
        self.wait_timeout = None if timeout is None else require_seconds("timeout", timeout)
        self.not_found_grace_period = require_seconds(
            "not_found_grace_period", not_found_grace_period, allow_zero=True
        )
        self.adoption_wait = (
            None if adoption_wait is None else require_positive_number("adoption_wait", adoption_wait)
        )
        self.exact_start = exact_start
        self._recording: dict[str, Any] | None = None
        self._memory: StartMemory | None = None
        self._record: StartRecord | None = None
        self._restart: Restart | None = None
        self._steps: TaskStart | None = None
        self._identity: TaskIdentity | None = None
        self._entered = 0.0
        validate_start_arguments({name: getattr(self, name) for name in _VALIDATED})

    @classmethod
    def partial(cls, **kwargs: Any) -> Any:
        """Like ``BaseOperator.partial``, with the literal arguments checked when the DAG is parsed."""
        validate_start_arguments({name: kwargs[name] for name in _VALIDATED if name in kwargs})
        check_literal_arguments(kwargs, _DURATIONS)
        return super().partial(**kwargs)

    @cached_property
    def hook(self) -> RecordingHook:
        """The hook, built on first use (never at DAG-parse time)."""
        from telnyx_provider.hooks.recording import RecordingHook

        return RecordingHook(
            telnyx_conn_id=self.telnyx_conn_id, adoption_wait=self.adoption_wait, **self.retry_overrides
        )

    def execute(self, context: Context) -> dict[str, Any]:
        """Start the recording (or carry on with an earlier try's); return it, or the final one."""
        params = validate_start_arguments({name: getattr(self, name) for name in _VALIDATED}, rendered=True)
        from telnyx_provider.operators.kill_decision import TaskIdentity

        self._entered = time.time()  # execution_timeout counts from here, as Airflow's own timer does
        self._memory = StartMemory.of(context)
        self._identity = TaskIdentity.of(context)
        recording, final = self._recording_of_earlier_try(context, params)
        if recording is None:
            recording = self._start(params, self._restart or _fresh_start())
        self._announce(context, recording)
        if not self.wait_for_completion or final:
            return recording
        self._recording = recording
        return self._wait(recording)

    def _recording_of_earlier_try(
        self, context: Context, params: StartRecordingParams
    ) -> tuple[dict[str, Any] | None, bool]:
        from telnyx_provider.operators.start_steps import TaskStart

        self._steps = TaskStart(self.hook, self._memory, self.call_sid, self.account_sid, self.exact_start)
        recording, final = self._steps.earlier_try(context, params)
        self._record, self._restart = self._steps.record, self._steps.restart
        return recording, final

    def _start(self, params: StartRecordingParams, restart: Restart) -> dict[str, Any]:
        from telnyx_provider.operators.start_steps import TaskStart

        steps = self._steps or TaskStart(
            self.hook, self._memory, self.call_sid, self.account_sid, self.exact_start
        )
        steps.restart = restart
        recording = steps.start(params)
        self._record = steps.record
        return recording

    def _announce(self, context: Context, recording: Mapping[str, Any]) -> None:
        """Push the recording's SID and URI to XCom now, before any wait."""
        ti = context.get("ti")
        if ti is not None:
            ti.xcom_push(key="recording_sid", value=recording.get("sid"))
            ti.xcom_push(key="recording_uri", value=recording.get("uri"))

    def _wait(self, recording: dict[str, Any]) -> dict[str, Any]:
        recording_sid = recording["sid"]
        account_sid = recording.get("account_sid") or self.account_sid
        started = time.time()
        deadline = None if self.wait_timeout is None else started + self.wait_timeout
        not_found_until = started + self.not_found_grace_period
        if self.deferrable:
            deadline, timed_out_by = deferred_deadline(deadline, self.execution_timeout, self._entered)
            self._defer(recording_sid, account_sid, deadline, not_found_until, timed_out_by)
        try:
            return self._poll(recording_sid, account_sid, deadline, not_found_until)
        except task_timeout_error():
            # Airflow raised execution_timeout inside the wait (it calls on_kill next, with the task still
            # running, which on_kill would take for a task that goes on): the timeout ends the recording.
            if self._recording is not None:
                why = f"the task's execution_timeout ({self.execution_timeout}) was reached"
                self._stop(recording_sid, account_sid, reason="timeout", why=why)
            raise

    def _poll(
        self, recording_sid: str, account_sid: str | None, deadline: float | None, not_found_until: float
    ) -> dict[str, Any]:
        while True:
            final = check_recording(
                self.hook,
                recording_sid,
                account_sid=account_sid,
                not_found_until=not_found_until,
                log=self.log,
                deadline=deadline,
            )
            if final is not None:
                self._recording = None
                return final
            now = time.time()
            if deadline is not None and now >= deadline:
                self._stop(recording_sid, account_sid, reason="timeout")
                raise AirflowSensorTimeout(
                    f"Recording {recording_sid} was not final after {self.wait_timeout:g} s; it was stopped."
                )
            time.sleep(self.poll_interval if deadline is None else min(self.poll_interval, deadline - now))

    def _defer(
        self,
        recording_sid: str,
        account_sid: str | None,
        deadline: float | None,
        not_found_until: float,
        timed_out_by: str | None,
    ) -> None:
        from telnyx_provider.triggers.recording import RecordingCompletedTrigger

        trigger = RecordingCompletedTrigger(
            recording_sid,
            account_sid=account_sid,
            telnyx_conn_id=self.telnyx_conn_id,
            poll_interval=self.poll_interval,
            deadline=deadline,
            not_found_deadline=not_found_until,
            call_sid=self.call_sid,
            stop_on_kill=True,
            **self.retry_overrides,
        )
        self.defer(
            trigger=trigger,
            method_name="execute_complete",
            kwargs={"account_sid": account_sid, "timed_out_by": timed_out_by},
            timeout=deferral_timeout(deadline),
        )

    def execute_complete(
        self,
        context: Context,
        event: dict[str, Any],
        account_sid: str | None = None,
        timed_out_by: str | None = None,
    ) -> dict[str, Any]:
        """Called when the trigger fires: the final recording, or stop it and fail on a timeout.

        :param timed_out_by: ``"execution_timeout"`` when the trigger's deadline was the task's
            ``execution_timeout`` (which Airflow does not apply to a deferred task).
        """
        self._memory = StartMemory.of(context)
        self._record = self._memory.load() if self._memory is not None else None
        if isinstance(event, dict) and event.get("status") == "timeout":
            sid = event.get("recording_sid", "")
            if timed_out_by == EXECUTION_TIMEOUT:
                why = execution_timeout_reason(self.execution_timeout)
                self._stop(sid, account_sid, reason="timeout", why=why)
                raise execution_timeout_error(f"Recording {sid} was not final when {why}; it was stopped.")
            self._stop(sid, account_sid, reason="timeout")
        return recording_from_event(event)

    def on_kill(self) -> None:
        """Stop the recording this task started if the task is ended while waiting for it (poke mode).

        Airflow calls this on every SIGTERM to the task, also when the task goes on: cleared, failed for
        missed heartbeats with a retry to come, its worker shutting down. So it first asks Airflow for the
        task's state (:mod:`telnyx_provider.operators.kill_decision`) and stops the recording only when the
        task ended (a user marked it failed or succeeded); otherwise, or when the state cannot be read within
        a second, it leaves the recording running (the next try resumes it) and says why. The stop has a
        short budget of its own (``KILL_STOP_BUDGET`` seconds): the task supervisor follows its SIGTERM with
        a SIGKILL a few seconds later.
        """
        if self._recording is None or not self.wait_for_completion:
            return
        from telnyx_provider.operators.kill_decision import reason_to_leave_running

        recording = self._recording
        reason = reason_to_leave_running(self._identity)
        if reason is not None:
            self.log.warning(
                "The task waiting for recording %s was killed; the recording is left running: %s.",
                recording["sid"],
                reason,
            )
            return
        self._stop(recording["sid"], recording.get("account_sid") or self.account_sid, reason="kill")

    def _stop(
        self, recording_sid: str, account_sid: str | None, *, reason: str, why: str | None = None
    ) -> None:
        from telnyx_provider.hooks.recording import RecordingHook
        from telnyx_provider.operators.recording_stop import stop_journalled

        hook = self.hook
        if reason == "kill":
            hook = RecordingHook(
                telnyx_conn_id=self.telnyx_conn_id,
                max_retries=2,
                retry_max_wait=1.0,
                retry_budget=KILL_STOP_BUDGET,
                request_timeout=KILL_STOP_TIMEOUT,
            )
        self._recording = None
        self._record = stop_journalled(
            hook,
            self._memory,
            self._record,
            call_sid=self.call_sid,
            recording_sid=recording_sid,
            account_sid=account_sid,
            reason=reason,
            why=why or ("the wait timed out" if reason == "timeout" else "the task was killed"),
            log=self.log,
        )


def _fresh_start() -> Restart:
    from telnyx_provider.operators.recording_retry import Restart

    return Restart()


__all__ = [
    "DeleteRecordingOperator",
    "PauseCallRecordingOperator",
    "ResumeCallRecordingOperator",
    "StartCallRecordingOperator",
    "StopCallRecordingOperator",
]
