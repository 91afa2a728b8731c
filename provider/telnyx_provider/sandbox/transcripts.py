"""Recording transcriptions: the spec's ``/Transcriptions`` resources, for calls with ``transcribe=True``.

A transcription exists once its recording is ``completed`` (never for ``absent`` ones): ``in-progress`` for
``processing_delay`` seconds (``transcription_text`` empty), then ``completed`` with a made-up transcript.
Deleting the recording deletes its transcription too.
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Any

from telnyx_provider.sandbox.errors import invalid_type, not_found
from telnyx_provider.sandbox.registry import Registry
from telnyx_provider.sandbox.views import ACCOUNTS_PREFIX, format_date

if TYPE_CHECKING:
    from telnyx_provider.sandbox.params import Paging
    from telnyx_provider.sandbox.state import Recording

API_VERSION = "2010-04-01"
PHRASES = (
    "Good morning, how may I help you?",
    "I would like to check the status of my order.",
    "Let me look that up for you.",
    "Thank you for calling, have a nice day.",
)


def transcript_text(recording_sid: str, duration: int) -> str:
    """Return a stable, made-up transcript: about one phrase per three seconds of audio.

    :param recording_sid: the recording (chooses the first phrase).
    :param duration: the recording's duration in seconds.
    """
    first = sum(recording_sid.encode()) % len(PHRASES)
    count = min(len(PHRASES), max(1, duration // 3))
    return " ".join(PHRASES[(first + i) % len(PHRASES)] for i in range(count))


def page_token(offset: int) -> str:
    """Return the opaque ``PageToken`` of the page starting at ``offset``."""
    return base64.urlsafe_b64encode(f"offset={offset}".encode()).decode().rstrip("=")


def offset_of(token: str) -> int:
    """Return the offset a ``PageToken`` stands for.

    :raises ApiError: 422 (code 10026) for a token this sandbox did not hand out.
    """
    try:
        decoded = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        name, _, value = decoded.partition("=")
        if name != "offset" or not value.isdigit():
            raise ValueError(decoded)
        return int(value)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise invalid_type("PageToken", token, "a token from a page link") from None


class TranscriptionsMixin(Registry):
    """The transcription routes of the store: list, get and delete."""

    def _transcription(self, rec: Recording, now: float) -> dict[str, Any] | None:
        """Return a recording's transcription at ``now``, or None if it has none (yet); the lock is held."""
        if rec.transcription_sid is None or rec.transcription_deleted:
            return None
        snap = rec.snapshot(now, self.processing_delay)
        if snap.status != "completed" or snap.duration is None:
            return None
        skew, created = self.policy.clock_skew, rec.final_at(self.processing_delay)
        done = now >= created + self.processing_delay
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "call_sid": rec.call.sid,
            "date_created": format_date(created + skew, self.date_format),
            "date_updated": format_date(
                created + (self.processing_delay if done else 0.0) + skew, self.date_format
            ),
            "duration": str(snap.duration),
            "recording_sid": rec.sid,
            "sid": rec.transcription_sid,
            "status": "completed" if done else "in-progress",
            "transcription_text": transcript_text(rec.sid, snap.duration) if done else "",
            "uri": f"{ACCOUNTS_PREFIX}{self.account_sid}/Transcriptions/{rec.transcription_sid}.json",
        }

    def _find_transcription(self, transcription_sid: str, now: float) -> tuple[Recording, dict[str, Any]]:
        for rec in self._recordings.values():
            if rec.transcription_sid == transcription_sid:
                view = self._transcription(rec, now)
                if view is not None:
                    return rec, view
                break
        raise not_found(f"Transcription {transcription_sid} not found")

    def list_transcriptions(self, account_sid: str, paging: Paging, token: str | None) -> dict[str, Any]:
        """Return one page of the account's transcriptions, oldest first (``PageToken`` paging).

        :param account_sid: account sid from the path.
        :param paging: the page size (capped like the recording lists) and, without a token, ``Page``.
        :param token: the ``PageToken`` of a page link, or None for the page ``paging.page``.
        :raises ApiError: 404 for an unknown account, 422 for a token not handed out here.
        """
        now, paging = self.clock(), self.policy.cap(paging)
        size = paging.page_size
        start = offset_of(token) if token else paging.page * size
        with self._lock:
            self._check_account(account_sid)
            views = [view for rec in self._recordings.values() if (view := self._transcription(rec, now))]
        items = views[start : start + size]
        base = f"{ACCOUNTS_PREFIX}{account_sid}/Transcriptions.json"

        def link(offset: int) -> str:
            return (
                f"{base}?PageToken={page_token(offset)}&PageSize={size}"
                if offset
                else f"{base}?PageSize={size}"
            )

        return {
            "transcriptions": items,
            "page": start // size,
            "page_size": size,
            "start": start,
            "end": start + len(items) - 1 if items else start,
            "uri": link(start),
            "first_page_uri": link(0),
            "next_page_uri": link(start + size) if start + len(items) < len(views) else None,
            "previous_page_uri": link(max(start - size, 0)) if start > 0 else None,
        }

    def get_transcription(self, account_sid: str, transcription_sid: str) -> dict[str, Any]:
        """Return one transcription's JSON.

        :raises ApiError: 404 for an unknown account or transcription (or one not there yet).
        """
        now = self.clock()
        with self._lock:
            self._check_account(account_sid)
            return self._find_transcription(transcription_sid, now)[1]

    def delete_transcription(self, account_sid: str, transcription_sid: str) -> None:
        """Delete a transcription; later reads of it get 404 (its recording stays).

        :raises ApiError: 404 for an unknown account or transcription.
        """
        now = self.clock()
        with self._lock:
            self._check_account(account_sid)
            rec, _ = self._find_transcription(transcription_sid, now)
            rec.transcription_deleted = True
