"""TelnyxRecordingLink: a button on the task that opens the recording in the Telnyx portal."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

#: Where the Mission Control Portal shows a recording. Telnyx documents no deep link to one recording:
#: this is the portal's call-recordings page (its routes live under ``#/app/``), filtered by the SID.
PORTAL_RECORDING_URL = "https://portal.telnyx.com/#/app/call-recordings?search={recording_sid}"


def portal_recording_url(recording_sid: str) -> str:
    """The portal URL of a recording (the SID percent-encoded)."""
    return PORTAL_RECORDING_URL.format(recording_sid=quote(recording_sid, safe=""))


def recording_sid_from_xcom(key_value: Any, return_value: Any) -> str | None:
    """The recording SID a task pushed: its ``recording_sid`` XCom, else its return value's SID."""
    if isinstance(key_value, str) and key_value:
        return key_value
    if isinstance(return_value, dict):
        for field in ("recording_sid", "sid"):
            if isinstance(return_value.get(field), str) and return_value[field]:
                return str(return_value[field])
    return None


class TelnyxRecordingLink(BaseOperatorLink):
    """Open the task's recording in the Telnyx portal.

    Built from the XCom the task pushed: the ``recording_sid`` key, else the return value's
    ``recording_sid`` (storage operator) or ``sid`` (start operator). Airflow 3 computes it on the worker
    when the task ends and stores it; no link is shown for a task that produced no recording.
    """

    name = "Telnyx recording"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        """The portal URL of the recording, or ``""`` when the task produced none."""
        try:  # Airflow 3.1+: the worker's XCom backend
            from airflow.sdk.execution_time.xcom import XCom
        except ImportError:  # pragma: no cover
            return ""
        sid = recording_sid_from_xcom(
            XCom.get_value(ti_key=ti_key, key="recording_sid"),
            XCom.get_value(ti_key=ti_key, key="return_value"),
        )
        return portal_recording_url(sid) if sid else ""
