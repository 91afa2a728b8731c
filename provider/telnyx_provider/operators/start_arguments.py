"""The start operator's arguments: which are the API's recording parameters, and how they are checked.

Literal values are checked when the DAG is parsed (``.partial()`` ones included); templated, XComArg and
mapped values once resolved, in ``execute``, before any request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from telnyx_provider.params import StartRecordingParams, require_identifier
from telnyx_provider.waiting import is_unresolved

if TYPE_CHECKING:
    from collections.abc import Mapping

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
#: The duration arguments, and whether each may be 0.
DURATIONS = {"poll_interval": False, "timeout": False, "not_found_grace_period": True}
#: The arguments :func:`validate_start_arguments` checks.
VALIDATED = ("call_sid", "account_sid", *RECORDING_PARAMETERS)


def validate_start_arguments(values: Mapping[str, Any], *, rendered: bool = False) -> StartRecordingParams:
    """Check the start operator's arguments; before rendering, values not known yet are left for later.

    :param values: argument name -> value (``call_sid``, ``account_sid`` and the recording parameters).
    :param rendered: every value is final (``execute``): nothing may be left unchecked.
    """
    known = {name: value for name, value in values.items() if rendered or not is_unresolved(value)}
    for name in ("call_sid", "account_sid"):
        if name in known and (name == "call_sid" or known[name] is not None):
            require_identifier(name, known[name])
    return StartRecordingParams.from_arguments(
        **{name: value for name, value in known.items() if name in RECORDING_PARAMETERS}
    )
