"""RecordingCompletedSensor: wait until a Telnyx recording is final."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

import pendulum
from airflow.sdk import BaseSensorOperator, PokeReturnValue

from telnyx_provider.errors import TelnyxValidationError
from telnyx_provider.models import parse_recording_uri
from telnyx_provider.params import require_identifier, require_positive_number
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


class RecordingCompletedSensor(BaseSensorOperator):
    """Wait until a recording is final: status ``completed`` *and* a duration.

    ``in-progress``, ``paused`` and ``stopped`` keep waiting (after a hang-up or a stop Telnyx may still
    report them with a null duration while it processes the audio); ``absent``, ``failed`` and ``deleted``
    fail the task without retries; any other status keeps waiting with a warning. A 404 is tolerated for
    ``not_found_grace_period`` after the sensor started, as a new recording may not be visible yet.

    Works in ``poke`` and ``reschedule`` mode and, with ``deferrable=True``, checks once and then waits
    on the triggerer (:class:`~telnyx_provider.triggers.recording.RecordingCompletedTrigger`), polling every
    ``poke_interval`` until ``timeout``. The final recording is returned and lands in XCom.

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
        super().__init__(**kwargs)
        self.recording_sid = recording_sid
        self.recording_uri = recording_uri
        self.account_sid = account_sid
        self.telnyx_conn_id = telnyx_conn_id
        self.retry_overrides = retry_overrides(max_retries, retry_max_wait, retry_budget)
        self.not_found_grace_period = seconds(not_found_grace_period)
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        if self.not_found_grace_period < 0:
            raise TelnyxValidationError("not_found_grace_period", not_found_grace_period, "0 or more seconds")
        require_positive_number("poke_interval", self.poke_interval)
        require_positive_number("timeout", self.timeout)
        self._resolve_target(validate_only=True)

    @cached_property
    def hook(self) -> RecordingHook:
        """The hook, built on first use (never at DAG-parse time)."""
        from telnyx_provider.hooks.recording import RecordingHook

        return RecordingHook(telnyx_conn_id=self.telnyx_conn_id, **self.retry_overrides)

    def execute(self, context: Context) -> Any:
        """Wait for the recording: poke or reschedule through Airflow, or check once and defer."""
        self._not_found_until = self._wait_started_at(context) + self.not_found_grace_period
        if not self.deferrable:
            return super().execute(context)
        recording_sid, account_sid = self._resolve_target()
        recording = check_recording(
            self.hook,
            recording_sid,
            account_sid=account_sid,
            not_found_until=self._not_found_until,
            log=self.log,
        )
        if recording is not None:
            return recording
        from telnyx_provider.triggers.recording import RecordingCompletedTrigger

        self.defer(
            trigger=RecordingCompletedTrigger(
                recording_sid,
                account_sid=account_sid,
                telnyx_conn_id=self.telnyx_conn_id,
                poll_interval=self.poke_interval,
                deadline=time.time() + self.timeout,
                not_found_deadline=self._not_found_until,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout) + DEFERRAL_MARGIN,
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
        )
        return PokeReturnValue(is_done=recording is not None, xcom_value=recording)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Called when the trigger fires: return the final recording or raise what went wrong."""
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
        sid, uri, account = self.recording_sid, self.recording_uri, self.account_sid
        if (sid is None) == (uri is None):
            raise TelnyxValidationError(
                "recording_sid/recording_uri",
                {"recording_sid": sid, "recording_uri": uri},
                "exactly one of the two",
            )
        if validate_only and any(has_template(value) for value in (sid, uri, account)):
            return "", None
        if account is not None:
            require_identifier("account_sid", account)
        if sid is not None:
            return require_identifier("recording_sid", sid), account
        ref = parse_recording_uri(uri) if isinstance(uri, str) else None
        if ref is None:
            raise TelnyxValidationError(
                "recording_uri",
                uri,
                "a recording URI such as /v2/texml/Accounts/{account_sid}/Recordings/{recording_sid}.json",
            )
        return ref.recording_sid, account if account is not None else ref.account_sid
