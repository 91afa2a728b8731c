"""The sandbox's calls and recordings for one account: data, lock, lookups and call control (no I/O)."""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from telnyx_provider.sandbox.errors import not_found
from telnyx_provider.sandbox.links import MediaLinks
from telnyx_provider.sandbox.listing import ListPolicy
from telnyx_provider.sandbox.state import Call, Clock, Recording, new_call_sid
from telnyx_provider.sandbox.views import check_date_format, recording_json

if TYPE_CHECKING:
    from telnyx_provider.sandbox.views import Snapshot


class Registry:
    """Thread-safe registry of the sandbox's calls and recordings for one account (base of the store).

    :param account_sid: the only account sid the store answers for; others get 404.
    :param clock: returns the current epoch time; inject a fake one in tests.
    :param recording_seconds: length after which a recording ends by itself, None for unlimited.
    :param processing_delay: seconds between a recording's end and its final state.
    :param media_prefix: base of media links (set once the server's port is known).
    :param policy: list lag, clock skew and page cap (see
        :class:`~telnyx_provider.sandbox.listing.ListPolicy`); all off by default.
    :param media_links: signs the ``media_url`` of completed recordings (a 600 s link by default).
    :param date_format: how dates are written: ``rfc2822`` or ``iso8601``.
    """

    def __init__(
        self,
        account_sid: str,
        *,
        clock: Clock = time.time,
        recording_seconds: float | None = None,
        processing_delay: float = 0.5,
        media_prefix: str = "",
        policy: ListPolicy | None = None,
        media_links: MediaLinks | None = None,
        date_format: str = "rfc2822",
    ) -> None:
        self.account_sid = account_sid
        self.date_format = check_date_format(date_format)
        self.clock = clock
        self.recording_seconds = recording_seconds
        self.processing_delay = processing_delay
        self.media_prefix = media_prefix
        self.policy = policy or ListPolicy()
        self.media_links = media_links or MediaLinks()
        self._lock = threading.Lock()
        self._calls: dict[str, Call] = {}
        self._recordings: dict[str, Recording] = {}
        self._starts: Counter[str] = Counter()
        self._all_started: dict[str, list[Recording]] = {}  # per call, deleted recordings included

    def _check_account(self, account_sid: str) -> None:
        if account_sid != self.account_sid:
            raise not_found(f"Account {account_sid} not found")

    def _call(self, call_sid: str) -> Call:
        call = self._calls.get(call_sid)
        if call is None:
            raise not_found(f"Call {call_sid} not found")
        return call

    def _recording(self, recording_sid: str) -> Recording:
        rec = self._recordings.get(recording_sid)
        if rec is None:
            raise not_found(f"Recording {recording_sid} not found")
        return rec

    def _json(self, rec: Recording, snap: Snapshot, call_scoped: bool, now: float) -> dict[str, Any]:
        """Render a recording read at ``now`` (our clock), with a media link signed at that moment."""
        skew = self.policy.clock_skew
        link = (
            self.media_links.sign(self.media_prefix, rec.sid, now + skew)
            if snap.status == "completed"
            else None
        )
        return recording_json(rec, snap, self.account_sid, link, call_scoped, skew, self.date_format)

    def service_now(self) -> float:
        """Return the current epoch time in the service's clock (ours plus the clock skew)."""
        return self.clock() + self.policy.clock_skew

    def create_call(
        self,
        hangup_after: float | None = None,
        silent: bool = False,
        transcribe: bool = False,
        audio_seconds: int | None = None,
    ) -> str:
        """Create a live call and return its sid.

        :param hangup_after: hang the call up by itself this many seconds from now; None: only on request.
        :param silent: recordings on this call end ``absent`` instead of ``completed``.
        :param transcribe: completed recordings on this call get a transcription.
        :param audio_seconds: every recording on this call lasts this long once final (duration and audio).
        :raises ValueError: for ``audio_seconds`` below 1.
        """
        if audio_seconds is not None and audio_seconds < 1:
            raise ValueError(f"audio_seconds must be >= 1, got {audio_seconds}")
        sid = new_call_sid()
        hangup_at = self.clock() + hangup_after if hangup_after is not None else math.inf
        with self._lock:
            self._calls[sid] = Call(sid, hangup_at, silent, transcribe, audio_seconds)
        return sid

    def add_past(self, calls: list[Call], recordings: list[Recording]) -> None:
        """Add calls and recordings made in the past (seeded history); the lists stay oldest first.

        They are not counted in :meth:`starts_per_call` (no client started them).

        :param calls: the calls, none of them known yet.
        :param recordings: their recordings, each in its call's ``recording_sids``.
        """
        with self._lock:
            for call in calls:
                self._calls[call.sid] = call
            merged = [*self._recordings.values(), *recordings]
            merged.sort(key=lambda rec: rec.started_at)  # stable: same-second recordings keep their order
            self._recordings = {rec.sid: rec for rec in merged}

    def hangup(self, call_sid: str) -> list[str]:
        """Hang a call up now (no-op if it already has); its running recordings end.

        :param call_sid: the call to hang up.
        :return: sids of the recordings whose end this moved (their final state is now scheduled).
        :raises ApiError: 404 for an unknown call.
        """
        now = self.clock()
        with self._lock:
            call = self._call(call_sid)
            if call.hangup_at <= now:
                return []
            call.hangup_at = now
            return [sid for sid in call.recording_sids if self._recordings[sid].end_time() == now]

    def media(self, recording_sid: str) -> tuple[int, int] | None:
        """Return ``(duration seconds, channels)`` of a completed recording's audio, or None if none."""
        now = self.clock()
        with self._lock:
            rec = self._recordings.get(recording_sid)
            if rec is None:
                return None
            snap = rec.snapshot(now, self.processing_delay)
        if snap.status != "completed" or snap.duration is None:
            return None
        return snap.duration, 1 if rec.params.channels == "single" else 2

    def completed_at(self) -> dict[str, float]:
        """Return, for each recording already final, the epoch time it became completed or absent."""
        now = self.clock()
        with self._lock:
            ends = [(sid, rec.end_time() + self.processing_delay) for sid, rec in self._recordings.items()]
        return {sid: final_at for sid, final_at in ends if final_at <= now}

    def starts_per_call(self) -> dict[str, int]:
        """Return how many recordings were actually started on each call (deleted ones included)."""
        with self._lock:
            return dict(self._starts)

    def counts(self) -> dict[str, int]:
        """Return the numbers of calls and (undeleted) recordings held."""
        with self._lock:
            return {"calls": len(self._calls), "recordings": len(self._recordings)}
