"""Thread-safe store of the sandbox's calls and recordings for one account: the recording operations."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from telnyx_provider.sandbox.errors import CODE_BAD_REQUEST, ApiError, not_found
from telnyx_provider.sandbox.state import Recording
from telnyx_provider.sandbox.transcripts import TranscriptionsMixin
from telnyx_provider.sandbox.views import ACCOUNTS_PREFIX, page_json

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


class RecordingStore(TranscriptionsMixin):
    """Thread-safe store of the sandbox's calls and recordings for one account (no I/O, injectable clock).

    Construction parameters are those of :class:`~telnyx_provider.sandbox.registry.Registry`.
    """

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
            if call.transcribe:
                rec.transcription_sid = str(uuid.uuid4())
            self._recordings[rec.sid] = rec
            self._all_started.setdefault(call_sid, []).append(rec)
            call.recording_sids.append(rec.sid)
            self._starts[call_sid] += 1
            snap = rec.snapshot(now, self.processing_delay)
        return self._json(rec, snap, True, now)

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
        return self._json(rec, snap, True, now)

    def get_recording(self, account_sid: str, recording_sid: str) -> dict[str, Any]:
        """Return one recording's JSON (account-scoped ``uri``).

        :raises ApiError: 404 for an unknown account or recording.
        """
        now = self.clock()
        with self._lock:
            self._check_account(account_sid)
            rec = self._recording(recording_sid)
            snap = rec.snapshot(now, self.processing_delay)
        return self._json(rec, snap, False, now)

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
        items = [self._json(rec, snap, False, now) for rec, snap in snaps]
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
        items = [self._json(rec, snap, True, now) for rec, snap in snaps]
        base = f"{ACCOUNTS_PREFIX}{account_sid}/Calls/{call_sid}/Recordings.json"
        return page_json(items, total, paging.page, paging.page_size, base, extra_query)

    def started_on(self, call_sid: str) -> list[dict[str, Any]]:
        """What the sandbox started on a call, as it knows it (not as any reply shows it): the test's truth.

        :return: ``{"sid", "track", "channels", "callback_url"}`` per recording, oldest first, deleted ones
            included (a start that happened stays counted).
        :raises ApiError: 404 for an unknown call.
        """
        with self._lock:
            self._call(call_sid)
            return [
                {
                    "sid": rec.sid,
                    "track": rec.params.track,
                    "channels": rec.params.channels,
                    "callback_url": rec.params.callback_url,
                }
                for rec in self._all_started.get(call_sid, ())
            ]

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
        return FinalCheck(None, self._json(rec, snap, False, now), rec.params)
