"""Which recording on a call is a start's own: the rule every adoption goes through.

Pure: no I/O, no clock. A recording is a start's own only on evidence no other start could produce:

- **the reply** to its own POST (``Evidence.REPLY``);
- **its start token** (exact mode, ``Evidence.TOKEN``): the start put a secret token of its own in its
  status-callback URL, and a signed callback carrying that token named the recording;
- for a ``both``-track start only, **the sole new match** (``Evidence.SOLE_MATCH``): exactly one
  recording on the call that was not there before the start was first sent (the *snapshot*) and agrees
  with it on every field Telnyx's fetch/list schema has (``channels``, ``source``; the call). It holds when
  the call has one start at a time (one ``dual`` recording per call); a second start with the same
  channels, or one started less than a list lag before the snapshot, would look the same.

The fetch/list schema (``TexmlGetCallRecordingResponseBody``) has no ``track``: an ``inbound`` and an
``outbound`` recording with the same channels look alike. So a one-track start never adopts on visible
fields: any new match makes its start ``Outcome.AMBIGUOUS``. No timestamp decides anything: dates come
from the service's clock.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from telnyx_provider.models import RecordingStatus, status_of

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Mapping

    from telnyx_provider.errors import TelnyxApiError
    from telnyx_provider.params import StartRecordingParams

#: How a recording started by the *Request recording for a call* endpoint reports its source.
API_SOURCE = "StartCallRecordingAPI"
#: What the API does when a parameter is not sent (Telnyx's documented defaults).
DEFAULT_CHANNELS = "dual"
DEFAULT_TRACK = "both"
_CHANNEL_COUNT = {"single": 1, "dual": 2}


class Evidence(str, enum.Enum):
    """What an adoption rests on; every adoption's log line names it."""

    REPLY = "the reply to its own request"
    TOKEN = "its start token, carried by a signed status callback naming the recording"
    SOLE_MATCH = (
        "the sole recording on the call that is new since the start's snapshot and matches its channels and "
        "source (a both-track start, assumed to be the call's only start)"
    )


def expected_fields(params: StartRecordingParams) -> dict[str, object]:
    """The fields the fetch/list schema has that a recording started with ``params`` reports."""
    channels = params.recording_channels or DEFAULT_CHANNELS
    return {"source": API_SOURCE, "channels": _CHANNEL_COUNT[channels]}


def track_of(params: StartRecordingParams) -> str:
    """The track a start records (``both`` when not sent)."""
    return params.recording_track or DEFAULT_TRACK


def is_one_track(params: StartRecordingParams) -> bool:
    """Whether the start records one track only: no visible field tells its recording from another track's."""
    return track_of(params) != "both"


def matches_start(recording: Mapping[str, Any], params: StartRecordingParams) -> bool:
    """Whether ``recording`` could be what a start with ``params`` created, judged on visible fields.

    A field the reply leaves out is no evidence either way; a field it reports must agree. ``channels`` may
    come as ``2`` or ``"2"``. A ``track`` in the reply is ignored: only the create reply has one.
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
    """What a look at the call says about a start whose reply was lost (no token)."""

    ADOPT = "adopt"  # a both-track start and exactly one new match: evidence SOLE_MATCH
    NONE = "none"  # nothing new matches (yet: the list may lag)
    AMBIGUOUS = "ambiguous"  # new matches that cannot be told apart from another start's


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
    """Apply the rule without a token: see the module docstring."""
    found = tuple(new_matching(recordings, snapshot, params))
    if not found:
        return Verdict(Outcome.NONE)
    if len(found) == 1 and not is_one_track(params):
        return Verdict(Outcome.ADOPT, found)
    return Verdict(Outcome.AMBIGUOUS, found)


def may_have_started(error: TelnyxApiError) -> bool:
    """Whether a failed start may still have created a recording.

    A definite no: any 4xx answer (429 included: the service refused it) and a request that never left
    (the connection never opened, the TLS handshake failed). Anything else — a reset after the request
    was sent, a 5xx, a read timeout — may hide a started recording.
    """
    if error.status is not None:
        return not 400 <= error.status < 500
    return error.failure not in ("connect", "tls")


def may_still_start(error: TelnyxApiError) -> bool:
    """Whether the service may carry the start out *later*: a read timeout or a gateway's 504."""
    return error.failure == "timeout" or error.status == 504


def is_active(recording: Mapping[str, Any]) -> bool:
    """Whether the recording is still capturing audio (``in-progress`` or ``paused``)."""
    status = status_of(recording)
    return status is not None and status.is_active


def describe_recordings(recordings: Iterable[Mapping[str, Any]]) -> str:
    """``sid (status, N channel(s), source)`` for each recording, for messages: what was seen on the call."""
    parts = [
        f"{recording.get('sid')} ({recording.get('status', '?')}, channels {recording.get('channels', '?')}, "
        f"{recording.get('source', '?')})"
        for recording in recordings
    ]
    return ", ".join(parts) if parts else "none"
