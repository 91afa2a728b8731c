"""StartCallRecordingOperator: start recording a live call, and optionally wait for the recording."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from telnyx_provider._compat import AirflowSensorTimeout
from telnyx_provider.errors import TelnyxApiError, TelnyxValidationError
from telnyx_provider.links import TelnyxRecordingLink
from telnyx_provider.models import parse_recording_uri
from telnyx_provider.params import StartRecordingParams, require_identifier, require_positive_number
from telnyx_provider.waiting import (
    DEFERRAL_MARGIN,
    check_recording,
    default_deferrable,
    has_template,
    recording_from_event,
    retry_overrides,
    seconds,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.sdk import Context

    from telnyx_provider.hooks.recording import RecordingHook

#: Operator arguments sent as the API's recording parameters.
RECORDING_PARAMETERS = (
    "play_beep",
    "recording_status_callback",
    "recording_status_callback_event",
    "recording_status_callback_method",
    "recording_channels",
    "recording_track",
    "send_recording_url",
)


class StartCallRecordingOperator(BaseOperator):
    """Start recording a live call (``POST .../Calls/{call_sid}/Recordings.json``); returns the recording.

    Every parameter of the API is an argument, validated before anything is sent: literal values when
    the DAG is parsed, templated values once rendered. The recording (a plain dict) goes to XCom; its
    ``sid`` and ``uri`` can feed :class:`~telnyx_provider.sensors.recording.RecordingCompletedSensor`.

    With ``wait_for_completion=True`` the operator waits for the final recording itself, polling every
    ``poll_interval`` (holding the worker slot) or, with ``deferrable=True``, on the triggerer. If the wait
    times out (``timeout``) or the task is killed, the recording is stopped rather than left running.

    If the task is retried after its start request may have reached Telnyx, an active recording this
    DAG run started on the call is adopted instead of recording the call twice.

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
        self.poll_interval = require_positive_number("poll_interval", seconds(poll_interval))
        self.wait_timeout = None if timeout is None else require_positive_number("timeout", seconds(timeout))
        self.not_found_grace_period = seconds(not_found_grace_period)
        self._recording: dict[str, Any] | None = None
        self._validate(rendered=False)

    @cached_property
    def hook(self) -> RecordingHook:
        """The hook, built on first use (never at DAG-parse time)."""
        from telnyx_provider.hooks.recording import RecordingHook

        return RecordingHook(telnyx_conn_id=self.telnyx_conn_id, **self.retry_overrides)

    def _validate(self, *, rendered: bool) -> StartRecordingParams | None:
        """Validate the arguments; before rendering, values holding a template are left for later."""
        values = {name: getattr(self, name) for name in RECORDING_PARAMETERS}
        checkable = {name: value for name, value in values.items() if rendered or not has_template(value)}
        for name in ("call_sid", "account_sid"):
            value = getattr(self, name)
            if (name == "call_sid" or value is not None) and (rendered or not has_template(value)):
                require_identifier(name, value)
        params = StartRecordingParams.from_arguments(**checkable)
        return params if rendered else None

    def execute(self, context: Context) -> dict[str, Any]:
        """Start the recording (or adopt the one an earlier try started) and return it, or the final one."""
        params = self._validate(rendered=True)
        assert params is not None
        recording = self._adopt_after_retry(context)
        if recording is None:
            recording = self.hook.start_call_recording(
                self.call_sid,
                account_sid=self.account_sid,
                **{name: getattr(params, name) for name in RECORDING_PARAMETERS},
            )
            self.log.info("Started recording %s on call %s.", recording.get("sid"), self.call_sid)
        self._recording = recording
        if not self.wait_for_completion:
            return recording
        return self._wait(recording)

    def _adopt_after_retry(self, context: Context) -> dict[str, Any] | None:
        """On a retry, the active recording an earlier try of this DAG run started, if any."""
        ti = context.get("ti")
        dag_run = context.get("dag_run")
        if ti is None or getattr(ti, "try_number", 1) <= 1:
            return None
        since: datetime | None = getattr(dag_run, "start_date", None) or getattr(ti, "start_date", None)
        if since is None:
            return None
        # Any status: a recording an earlier try started may have ended since (the call hung up); it is
        # still this task's recording, and starting another would record the call twice.
        return self.hook.find_recording_started_since(
            self.call_sid, since, account_sid=self.account_sid, active_only=False
        )

    def _wait(self, recording: dict[str, Any]) -> dict[str, Any]:
        recording_sid = recording["sid"]
        account_sid = recording.get("account_sid") or self.account_sid
        started = time.time()
        deadline = None if self.wait_timeout is None else started + self.wait_timeout
        not_found_until = started + self.not_found_grace_period
        if self.deferrable:
            from telnyx_provider.triggers.recording import RecordingCompletedTrigger

            self.defer(
                trigger=RecordingCompletedTrigger(
                    recording_sid,
                    account_sid=account_sid,
                    telnyx_conn_id=self.telnyx_conn_id,
                    poll_interval=self.poll_interval,
                    deadline=deadline,
                    not_found_deadline=not_found_until,
                ),
                method_name="execute_complete",
                kwargs={"account_sid": account_sid},
                timeout=None
                if self.wait_timeout is None
                else timedelta(seconds=self.wait_timeout) + DEFERRAL_MARGIN,
            )
        while True:
            final = check_recording(
                self.hook,
                recording_sid,
                account_sid=account_sid,
                not_found_until=not_found_until,
                log=self.log,
            )
            if final is not None:
                self._recording = None
                return final
            now = time.time()
            if deadline is not None and now >= deadline:
                self._stop(
                    recording_sid, account_sid, reason=f"the wait timed out after {self.wait_timeout:g} s"
                )
                raise AirflowSensorTimeout(
                    f"Recording {recording_sid} was not final after {self.wait_timeout:g} s; it was stopped."
                )
            time.sleep(self.poll_interval if deadline is None else min(self.poll_interval, deadline - now))

    def execute_complete(
        self, context: Context, event: dict[str, Any], account_sid: str | None = None
    ) -> dict[str, Any]:
        """Called when the trigger fires: the final recording, or stop it and fail on a timeout."""
        if isinstance(event, dict) and event.get("status") == "timeout":
            self._stop(event.get("recording_sid", ""), account_sid, reason="the wait timed out")
        return recording_from_event(event)

    def on_kill(self) -> None:
        """Stop the recording this task started if the task is killed while waiting for it."""
        if self._recording is not None and self.wait_for_completion:
            recording = self._recording
            self._stop(
                recording["sid"],
                recording.get("account_sid") or self.account_sid,
                reason="the task was killed",
            )

    def _stop(self, recording_sid: str, account_sid: str | None, *, reason: str) -> None:
        try:
            self.hook.stop_call_recording(self.call_sid, recording_sid, account_sid=account_sid)
        except TelnyxApiError as error:
            self.log.error("Could not stop recording %s after %s: %s", recording_sid, reason, error)
        else:
            self.log.warning(
                "Stopped recording %s on call %s because %s.", recording_sid, self.call_sid, reason
            )
        self._recording = None


# -- the rest of a recording's lifecycle ------------------------------------------------------------


def _unresolved(value: object) -> bool:
    """A value known only at run time: a Jinja template, an ``XComArg`` or a mapped argument."""
    return has_template(value) or hasattr(value, "iter_references")


def resolve_recording(
    recording_sid: object, recording_uri: object, account_sid: object, *, rendered: bool
) -> tuple[str, str | None]:
    """The ``(recording_sid, account_sid)`` named by a SID or a recording URI (exactly one of the two).

    Before rendering (``rendered=False``), values known only at run time are left for later and
    ``("", None)`` is returned.
    """
    if (recording_sid is None) == (recording_uri is None):
        raise TelnyxValidationError(
            "recording_sid/recording_uri",
            {"recording_sid": recording_sid, "recording_uri": recording_uri},
            "exactly one of the two",
        )
    if not rendered and any(_unresolved(value) for value in (recording_sid, recording_uri, account_sid)):
        return "", None
    account = None if account_sid is None else require_identifier("account_sid", account_sid)
    if recording_sid is not None:
        return require_identifier("recording_sid", recording_sid), account
    ref = parse_recording_uri(recording_uri) if isinstance(recording_uri, str) else None
    if ref is None:
        raise TelnyxValidationError(
            "recording_uri",
            recording_uri,
            "a recording URI such as /v2/texml/Accounts/{account_sid}/Recordings/{recording_sid}.json",
        )
    return ref.recording_sid, account if account is not None else ref.account_sid


class _UpdateCallRecordingOperator(BaseOperator):
    """Set a recording's status (``POST .../Calls/{call_sid}/Recordings/{recording_sid}.json``).

    :param call_sid: the call the recording is on (``v3:...``).
    :param recording_sid: the recording (the ``sid`` the start operator returned).
    :param account_sid: the account; the connection's login when ``None``.
    :param telnyx_conn_id: the Telnyx connection.
    """

    template_fields: Sequence[str] = ("call_sid", "recording_sid", "account_sid")
    ui_color = "#00c08b"
    #: The status this operator sets.
    status: str = ""

    def __init__(
        self,
        *,
        call_sid: str,
        recording_sid: str,
        account_sid: str | None = None,
        telnyx_conn_id: str = "telnyx_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.call_sid = call_sid
        self.recording_sid = recording_sid
        self.account_sid = account_sid
        self.telnyx_conn_id = telnyx_conn_id
        self._validate(rendered=False)

    @cached_property
    def hook(self) -> RecordingHook:
        """The hook, built on first use (never at DAG-parse time)."""
        from telnyx_provider.hooks.recording import RecordingHook

        return RecordingHook(telnyx_conn_id=self.telnyx_conn_id)

    def _validate(self, *, rendered: bool) -> None:
        for name in ("call_sid", "recording_sid", "account_sid"):
            value = getattr(self, name)
            if (name != "account_sid" or value is not None) and (rendered or not _unresolved(value)):
                require_identifier(name, value)

    def execute(self, context: Context) -> dict[str, Any]:
        """Set the status; returns the recording as Telnyx reports it afterwards."""
        self._validate(rendered=True)
        recording = self.hook.update_call_recording(
            self.call_sid, self.recording_sid, self.status, account_sid=self.account_sid
        )
        self.log.info(
            "Recording %s on call %s is now %s.", self.recording_sid, self.call_sid, recording.get("status")
        )
        return recording


class PauseCallRecordingOperator(_UpdateCallRecordingOperator):
    """Pause a recording (``Status=paused``): the audio from now on is not recorded until it is resumed.

    Contact centres pause before a caller reads out a card number and resume afterwards, so card data never
    reaches the recording (PCI DSS).
    """

    status = "paused"


class ResumeCallRecordingOperator(_UpdateCallRecordingOperator):
    """Resume a paused recording (``Status=in-progress``)."""

    status = "in-progress"


class StopCallRecordingOperator(_UpdateCallRecordingOperator):
    """Stop a recording (``Status=stopped``); Telnyx then processes it into its final, ``completed`` form."""

    status = "stopped"


class DeleteRecordingOperator(BaseOperator):
    """Delete a recording and its audio (``DELETE .../Recordings/{recording_sid}.json``).

    :param recording_sid: the recording; or give ``recording_uri``.
    :param recording_uri: the recording's ``uri`` (either form), from which the SID and account are read.
    :param account_sid: the account; else the one in ``recording_uri``, else the connection's login.
    :param telnyx_conn_id: the Telnyx connection.
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
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.recording_sid = recording_sid
        self.recording_uri = recording_uri
        self.account_sid = account_sid
        self.telnyx_conn_id = telnyx_conn_id
        resolve_recording(recording_sid, recording_uri, account_sid, rendered=False)

    @cached_property
    def hook(self) -> RecordingHook:
        """The hook, built on first use (never at DAG-parse time)."""
        from telnyx_provider.hooks.recording import RecordingHook

        return RecordingHook(telnyx_conn_id=self.telnyx_conn_id)

    def execute(self, context: Context) -> str:
        """Delete the recording; returns its SID."""
        recording_sid, account_sid = resolve_recording(
            self.recording_sid, self.recording_uri, self.account_sid, rendered=True
        )
        self.hook.delete_recording(recording_sid, account_sid=account_sid)
        self.log.info("Deleted recording %s.", recording_sid)
        return recording_sid
