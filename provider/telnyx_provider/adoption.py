"""Which recording on a call is a start's own: the rule every adoption goes through.

Pure: no I/O, no clock. A start request whose reply was lost may still have created a recording; before
sending it again (or instead of waiting for a reply that will not come) the call's recordings are read
and compared with the *snapshot* of the SIDs the call had before the request was first sent. A recording
is the start's own only if it is **not** in that snapshot **and** it matches what the start asked for
(channels, track, started through the API). No timestamp decides it, so a skewed clock or a lagging list
cannot make another start's recording look like ours.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from telnyx_provider.models import RecordingStatus, status_of

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Mapping

    from telnyx_provider.params import StartRecordingParams

#: How a recording started by the *Request recording for a call* endpoint reports its source.
API_SOURCE = "StartCallRecordingAPI"
#: What the API does when a parameter is not sent (Telnyx's documented defaults).
DEFAULT_CHANNELS = "dual"
DEFAULT_TRACK = "both"
_CHANNEL_COUNT = {"single": 1, "dual": 2}


def expected_fields(params: StartRecordingParams) -> dict[str, object]:
    """The fields a recording started with ``params`` reports: ``source``, ``channels`` and ``track``."""
    channels = params.recording_channels or DEFAULT_CHANNELS
    return {
        "source": API_SOURCE,
        "channels": _CHANNEL_COUNT[channels],
        "track": params.recording_track or DEFAULT_TRACK,
    }


def matches_start(recording: Mapping[str, Any], params: StartRecordingParams) -> bool:
    """Whether ``recording`` is what a start with ``params`` creates.

    A field the reply leaves out (Telnyx's GET schema has no ``track``) is no evidence either way; a field
    it reports must agree. ``channels`` may come as ``2`` or ``"2"``.
    """
    for name, expected in expected_fields(params).items():
        if name not in recording or recording[name] is None:
            continue
        value = recording[name]
        if name == "channels":
            try:
                value = int(value)
            except (TypeError, ValueError):
                return False
        if value != expected:
            return False
    return True


def new_matching(
    recordings: Iterable[Mapping[str, Any]], snapshot: Collection[str], params: StartRecordingParams
) -> list[dict[str, Any]]:
    """The recordings that are not in ``snapshot`` and match ``params``, deleted ones left out."""
    return [
        dict(recording)
        for recording in recordings
        if recording.get("sid") not in snapshot
        and status_of(recording) is not RecordingStatus.DELETED
        and matches_start(recording, params)
    ]


class Outcome(str, enum.Enum):
    """What a look at the call says about a start whose reply was lost."""

    ADOPT = "adopt"  # exactly one new matching recording: it is the start's own
    NONE = "none"  # nothing new matches (yet: the list may lag)
    AMBIGUOUS = "ambiguous"  # several: two starts with the same parameters at the same moment


@dataclass(frozen=True)
class Verdict:
    """The outcome of :func:`judge` and the recordings behind it."""

    outcome: Outcome
    recordings: tuple[dict[str, Any], ...] = ()

    @property
    def recording(self) -> dict[str, Any]:
        """The adopted recording (only for ``Outcome.ADOPT``)."""
        return self.recordings[0]

    def sids(self) -> list[str]:
        """The SIDs of the recordings found."""
        return [str(recording.get("sid")) for recording in self.recordings]


def judge(
    recordings: Iterable[Mapping[str, Any]], snapshot: Collection[str], params: StartRecordingParams
) -> Verdict:
    """Apply the rule: exactly one new matching recording is adopted; none or several are not."""
    found = tuple(new_matching(recordings, snapshot, params))
    if len(found) == 1:
        return Verdict(Outcome.ADOPT, found)
    return Verdict(Outcome.AMBIGUOUS if found else Outcome.NONE, found)


def is_active(recording: Mapping[str, Any]) -> bool:
    """Whether the recording is still capturing audio (``in-progress`` or ``paused``)."""
    status = status_of(recording)
    return status is not None and status.is_active
