"""The sandbox's calls and recordings: a lazily evaluated state machine with an injectable clock.

Nothing here does I/O. Every transition that time alone causes (a recording reaching its length, an automatic
hang-up, the end of processing) is derived from stored instants on each read, so reading 10,000 recordings
costs no background work; only explicit actions (start, pause, resume, stop, hang-up, delete) mutate state.

A recording's life::

    in-progress <-> paused --(hang-up | Status=stopped | length reached)--> ended
    ended: reported as "stopped" (if stopped via the API) or "in-progress" for ``processing_delay`` seconds,
    then "completed" (duration and media_url set) or, on a silent call, "absent" (duration "0", no media).
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from telnyx_provider.sandbox.views import Snapshot

if TYPE_CHECKING:
    from telnyx_provider.sandbox.params import StartParams

Clock = Callable[[], float]


def new_call_sid() -> str:
    """Return a fresh call sid shaped like Telnyx's: ``v3:`` and 54 URL-safe characters."""
    return "v3:" + secrets.token_urlsafe(40)


@dataclass(slots=True, eq=False)
class Call:
    """A simulated phone call that recordings can be started on.

    :param sid: the call sid.
    :param hangup_at: epoch time of the hang-up, ``math.inf`` while none is known.
    :param silent: whether recordings on this call end ``absent`` (no audio).
    :param transcribe: whether completed recordings on this call get a transcription.
    :param audio_seconds: the duration (and audio length) of every recording on this call once final,
        whatever the time it ran; None: the time it really recorded.
    """

    sid: str
    hangup_at: float
    silent: bool
    transcribe: bool = False
    audio_seconds: int | None = None
    recording_sids: list[str] = field(default_factory=list)


@dataclass(slots=True, eq=False)
class Recording:
    """One call recording; its visible state is derived by :meth:`snapshot`.

    :param sid: the recording sid (a uuid4 string).
    :param call: the call being recorded.
    :param params: the validated start parameters.
    :param started_at: epoch time of the start.
    :param length_end: epoch time the configured recording length is reached, ``math.inf`` if unlimited.
    """

    sid: str
    call: Call
    params: StartParams
    started_at: float
    length_end: float
    stopped_at: float = math.inf
    recorded: float = 0.0  # seconds recorded before the current (or last) pause
    running_since: float | None = None  # None while paused
    updated_at: float = 0.0
    final_notified: bool = False
    transcription_sid: str | None = None  # set on calls created with transcribe=True
    transcription_deleted: bool = False
    source: str = "StartCallRecordingAPI"  # the spec's RecordingSource: how it was created
    conference_sid: str | None = None

    def end_time(self) -> float:
        """Return when the recording ends (or ended): the first of stop, hang-up and length reached."""
        return min(self.stopped_at, self.call.hangup_at, self.length_end)

    def recorded_seconds(self, until: float) -> float:
        """Return the seconds of audio recorded up to ``until``, pauses excluded.

        :param until: an epoch time not after the recording's end.
        """
        running = until - self.running_since if self.running_since is not None else 0.0
        return self.recorded + max(running, 0.0)

    def snapshot(self, now: float, processing_delay: float) -> Snapshot:
        """Return what a reader sees at ``now``.

        :param now: the current epoch time.
        :param processing_delay: seconds between the end and the final state.
        """
        end = self.end_time()
        if now < end:
            return Snapshot(
                "in-progress" if self.running_since is not None else "paused", None, self.updated_at
            )
        final_at = end + processing_delay
        if now < final_at:
            status = "stopped" if self.stopped_at == end else "in-progress"
            return Snapshot(status, None, max(self.updated_at, end))
        if self.call.silent:
            return Snapshot("absent", 0, final_at)
        if self.call.audio_seconds is not None:
            return Snapshot("completed", self.call.audio_seconds, final_at)
        return Snapshot("completed", max(1, int(self.recorded_seconds(end) + 0.5)), final_at)

    def final_at(self, processing_delay: float) -> float:
        """Return when the recording reaches (or reached) its final state; ``math.inf`` while unknown.

        :param processing_delay: seconds between the end and the final state.
        """
        return self.end_time() + processing_delay
