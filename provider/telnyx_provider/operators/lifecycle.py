"""The rest of a recording's lifecycle as operators: pause, resume, stop and delete.

They are imported from :mod:`telnyx_provider.operators.recording`, next to the start operator.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from telnyx_provider.params import require_identifier, resolve_recording
from telnyx_provider.waiting import is_unresolved

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.sdk import Context

    from telnyx_provider.hooks.recording import RecordingHook


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
            if (name != "account_sid" or value is not None) and (rendered or not is_unresolved(value)):
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
