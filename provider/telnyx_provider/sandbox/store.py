"""Thread-safe store of the sandbox's calls and recordings for one account (no I/O, injectable clock)."""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from telnyx_provider.sandbox.errors import CODE_BAD_REQUEST, ApiError, not_found
from telnyx_provider.sandbox.listing import ListPolicy
from telnyx_provider.sandbox.state import Call, Clock, Recording, new_call_sid
from telnyx_provider.sandbox.views import ACCOUNTS_PREFIX, Snapshot, page_json, recording_json

if TYPE_CHECKING:
    from telnyx_provider.sandbox.params import Paging, StartParams


@dataclass(frozen=True, slots=True)
class FinalCheck:
    """Outcome of :meth:`RecordingStore.claim_final`.

    :param due: when to look again (the final state is not reached yet), or None.
    :param view: the final recording JSON when the final callback should be sent now, else None.
    :param params: the recording's start parameters (callback settings) when ``view`` is set.
    """

    due: float | None
    view: dict[str, Any] | None = None
    params: StartParams | None = None


class RecordingStore:
    """Thread-safe store of the sandbox's calls and recordings for one account.

    :param account_sid: the only account sid the store answers for; others get 404.
    :param clock: returns the current epoch time; inject a fake one in tests.
    :param recording_seconds: length after which a recording ends by itself, None for unlimited.
    :param processing_delay: seconds between a recording's end and its final state.
    :param media_prefix: base of media links (set once the server's port is known).
    :param policy: list lag, clock skew and page cap (see :class:`ListPolicy`); all off by default.
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
    ) -> None:
        self.account_sid = account_sid
        self.clock = clock
        self.recording_seconds = recording_seconds
        self.processing_delay = processing_delay
        self.media_prefix = media_prefix
        self.policy = policy or ListPolicy()
        self._lock = threading.Lock()
        self._calls: dict[str, Call] = {}
        self._recordings: dict[str, Recording] = {}
        self._starts: Counter[str] = Counter()

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

    def _json(self, rec: Recording, snap: Snapshot, call_scoped: bool) -> dict[str, Any]:
        return recording_json(
            rec, snap, self.account_sid, self.media_prefix, call_scoped, self.policy.clock_skew
        )

    def service_now(self) -> float:
        """Return the current epoch time in the service's clock (ours plus the clock skew)."""
        return self.clock() + self.policy.clock_skew

    def create_call(self, hangup_after: float | None = None, silent: bool = False) -> str:
        """Create a live call and return its sid.

        :param hangup_after: hang the call up by itself this many seconds from now; None: only on request.
        :param silent: recordings on this call end ``absent`` instead of ``completed``.
        """
        sid = new_call_sid()
        hangup_at = self.clock() + hangup_after if hangup_after is not None else math.inf
        with self._lock:
            self._calls[sid] = Call(sid, hangup_at, silent)
        return sid

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

    def start_recording(self, account_sid: str, call_sid: str, params: StartParams) -> dict[str, Any]:
        """Start a recording on a live call and return its JSON (call-scoped ``uri``).

        :param account_sid: account sid from the path.
        :param call_sid: call sid from the path (decoded).
        :param params: validated start parameters.
        :raises ApiError: 404 for an unknown account or call, or a call that is no longer live.
        """
        with self._lock:  # the clock is read under the lock so a call's recordings are in start order
            now = self.clock()
            length_end = now + self.recording_seconds if self.recording_seconds is not None else math.inf
            self._check_account(account_sid)
            call = self._call(call_sid)
            if call.hangup_at <= now:
                raise not_found(f"Call {call_sid} is not live: it has hung up")
            rec = Recording(
                str(uuid.uuid4()), call, params, now, length_end, running_since=now, updated_at=now
            )
            self._recordings[rec.sid] = rec
            call.recording_sids.append(rec.sid)
            self._starts[call_sid] += 1
            snap = rec.snapshot(now, self.processing_delay)
        return self._json(rec, snap, True)

    def update_recording(
        self, account_sid: str, call_sid: str, recording_sid: str, status: str
    ) -> dict[str, Any]:
        """Pause (``paused``), resume (``in-progress``) or stop (``stopped``) a running recording.

        Setting the status it already has is accepted and changes nothing. A recording that has ended
        (stopped, hung up or length reached) can no longer be updated: that is a 422 (code 10015).

        :param account_sid: account sid from the path.
        :param call_sid: call sid from the path; must be the recording's call.
        :param recording_sid: the recording to update.
        :param status: validated target status.
        :return: the recording's JSON (call-scoped ``uri``).
        :raises ApiError: 404 for an unknown account, call or recording, 422 for an ended recording.
        """
        now = self.clock()
        with self._lock:
            self._check_account(account_sid)
            rec = self._recording(recording_sid)
            if rec.call.sid != call_sid:
                raise not_found(f"Recording {recording_sid} not found on call {call_sid}")
            if now >= rec.end_time():
                raise ApiError(
                    422,
                    CODE_BAD_REQUEST,
                    "Recording not active",
                    f"Recording {recording_sid} has already ended and cannot be set to {status}",
                )
            if status == "stopped":
                rec.stopped_at = now
            elif status == "paused" and rec.running_since is not None:
                rec.recorded += now - rec.running_since
                rec.running_since = None
            elif status == "in-progress" and rec.running_since is None:
                rec.running_since = now
            rec.updated_at = now
            snap = rec.snapshot(now, self.processing_delay)
        return self._json(rec, snap, True)

    def get_recording(self, account_sid: str, recording_sid: str) -> dict[str, Any]:
        """Return one recording's JSON (account-scoped ``uri``).

        :raises ApiError: 404 for an unknown account or recording.
        """
        now = self.clock()
        with self._lock:
            self._check_account(account_sid)
            rec = self._recording(recording_sid)
            snap = rec.snapshot(now, self.processing_delay)
        return self._json(rec, snap, False)

    def delete_recording(self, account_sid: str, recording_sid: str) -> None:
        """Delete a recording (whatever its state); later reads of it get 404.

        :raises ApiError: 404 for an unknown account or recording.
        """
        with self._lock:
            self._check_account(account_sid)
            rec = self._recordings.pop(recording_sid, None)
            if rec is None:
                raise not_found(f"Recording {recording_sid} not found")
            rec.call.recording_sids.remove(recording_sid)

    def list_recordings(self, account_sid: str, paging: Paging, extra_query: str = "") -> dict[str, Any]:
        """Return one page of the account's recordings, oldest first, in the list envelope.

        :param paging: page, page size and ``DateCreated`` bounds.
        :param extra_query: encoded filter parameters to repeat in the page links.
        :raises ApiError: 404 for an unknown account.
        """
        now, paging = self.clock(), self.policy.cap(paging)
        with self._lock:
            self._check_account(account_sid)
            chosen, total = self.policy.select(self._recordings.values(), paging, now)
            snaps = [(rec, rec.snapshot(now, self.processing_delay)) for rec in chosen]
        items = [self._json(rec, snap, False) for rec, snap in snaps]
        base = f"{ACCOUNTS_PREFIX}{account_sid}/Recordings.json"
        return page_json(items, total, paging.page, paging.page_size, base, extra_query)

    def list_call_recordings(
        self, account_sid: str, call_sid: str, paging: Paging, extra_query: str = ""
    ) -> dict[str, Any]:
        """Return one page of a call's recordings (call-scoped ``uri``), oldest first, in the list envelope.

        :raises ApiError: 404 for an unknown account or call.
        """
        now, paging = self.clock(), self.policy.cap(paging)
        with self._lock:
            self._check_account(account_sid)
            call = self._call(call_sid)
            recordings = [self._recordings[sid] for sid in call.recording_sids]
            chosen, total = self.policy.select(recordings, paging, now)
            snaps = [(rec, rec.snapshot(now, self.processing_delay)) for rec in chosen]
        items = [self._json(rec, snap, True) for rec, snap in snaps]
        base = f"{ACCOUNTS_PREFIX}{account_sid}/Calls/{call_sid}/Recordings.json"
        return page_json(items, total, paging.page, paging.page_size, base, extra_query)

    def final_due(self, recording_sid: str) -> float | None:
        """Return when a recording that has a status callback URL reaches its final state.

        :return: the epoch time, or None if the end is not known yet, it has no callback URL, was deleted or
            its final state was already claimed.
        """
        with self._lock:
            rec = self._recordings.get(recording_sid)
            if rec is None or rec.final_notified or rec.params.callback_url is None:
                return None
            end = rec.end_time()
        return end + self.processing_delay if end != math.inf else None

    def claim_final(self, recording_sid: str) -> FinalCheck:
        """Claim, once, the right to announce a recording's final state (completed or absent).

        :return: the final JSON and parameters if it is final and unclaimed; else when to look again.
        """
        now = self.clock()
        with self._lock:
            rec = self._recordings.get(recording_sid)
            if rec is None or rec.final_notified:
                return FinalCheck(None)
            snap = rec.snapshot(now, self.processing_delay)
            if snap.duration is None:
                end = rec.end_time()
                return FinalCheck(end + self.processing_delay if end != math.inf else None)
            rec.final_notified = True
        return FinalCheck(None, self._json(rec, snap, False), rec.params)

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
