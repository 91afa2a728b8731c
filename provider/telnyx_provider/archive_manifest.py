"""The manifest of one archived interval: what was stored where, with its size and SHA-256 (pure, no I/O).

One JSON object per interval, at ``{dst}/_manifests/{interval}.json``; the same recordings give the same bytes
(sorted keys, entries ordered by creation then SID, no time of writing), so a re-run that changes nothing
writes the manifest it read. Shape (version 1)::

    {"version": 1, "account_sid": "...", "date_from": "2024-01-01T00:00:00+00:00", "date_to": "...",
     "destination": "s3://bucket/calls/", "layout": "{date_created:%Y/%m/%d}/...",
     "recordings": [{"recording_sid", "call_sid", "path", "size", "sha256", "content_type", "duration",
                     "date_created", "source", "deletion"}, ...],
     "not_final": [{"recording_sid", "call_sid", "status", "date_created", "source"}, ...],
     "no_audio": [{"recording_sid", "call_sid", "status", "date_created", "source"}, ...],
     "totals": {"recordings", "bytes", "not_final", "no_audio", "deleted"}}

``deletion`` is ``null`` (not asked), ``"pending"`` (asked, not done yet), ``"deleted"`` (gone from Telnyx
after its copy was read back and matched) or ``"failed"`` (the delete failed: a re-run tries again).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from telnyx_provider.archive_plan import Interval, created_at, parse_moment
from telnyx_provider.errors import TelnyxValidationError

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

MANIFEST_VERSION = 1
#: Deletion states of an archived recording.
DELETION_STATES = (None, "pending", "deleted", "failed")
#: Which of two deletion states of one recording tells more (see :meth:`Manifest.merge`).
_DELETION_RANK = {None: 0, "failed": 1, "pending": 1, "deleted": 2}
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_BRIEF_FIELDS = ("recording_sid", "call_sid", "status", "date_created", "source")


class ManifestError(ValueError):
    """A manifest that cannot be used: not JSON, another version, account or interval, a malformed entry."""


def brief(recording: Mapping[str, Any]) -> dict[str, Any]:
    """A listed recording that was not archived (not final, or without audio), as the manifest names it."""
    created = created_at(recording)
    return {
        "recording_sid": recording.get("sid"),
        "call_sid": recording.get("call_sid"),
        "status": recording.get("status"),
        "date_created": created.isoformat() if created else recording.get("date_created"),
        "source": recording.get("source"),
    }


def archived_entry(stored: Mapping[str, Any], recording: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest entry of a stored recording: what the download returned, with the listing's date and
    source, not deleted (yet)."""
    created = created_at(recording)
    return {
        "recording_sid": stored["recording_sid"],
        "call_sid": stored.get("call_sid") or recording.get("call_sid"),
        "path": stored["path"],
        "size": stored["size"],
        "sha256": stored["sha256"],
        "content_type": stored.get("content_type"),
        "duration": stored.get("duration"),
        "date_created": created.isoformat() if created else recording.get("date_created"),
        "source": recording.get("source"),
        "deletion": None,
    }


def check_entry(entry: object) -> dict[str, Any]:
    """An archived entry read back from a manifest or the task state store, checked.

    :raises ManifestError: a missing SID or path, a size that is not a whole number, a bad SHA-256.
    """
    if not isinstance(entry, dict):
        raise ManifestError(f"an entry is not an object: {entry!r}"[:200])
    sid, path, size, sha256 = (entry.get(name) for name in ("recording_sid", "path", "size", "sha256"))
    if not isinstance(sid, str) or not sid or not isinstance(path, str) or not path:
        raise ManifestError(f"an entry lacks its recording_sid or path: {entry!r}"[:200])
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ManifestError(f"entry {sid} has no valid size: {size!r}")
    if not isinstance(sha256, str) or not _SHA256_RE.fullmatch(sha256):
        raise ManifestError(f"entry {sid} has no valid sha256: {sha256!r}")
    if entry.get("deletion") not in DELETION_STATES:
        raise ManifestError(f"entry {sid} has an unknown deletion state: {entry.get('deletion')!r}")
    return dict(entry)


def _order(entry: Mapping[str, Any]) -> tuple[str, str]:
    return str(entry.get("date_created") or ""), str(entry.get("recording_sid") or "")


@dataclass
class Manifest:
    """What is archived of one interval, keyed by recording SID.

    :param account_sid: the account.
    :param interval: the interval.
    :param destination: ``dst`` as a URL (the prefix the paths are under).
    :param layout: the layout the objects were named by.
    """

    account_sid: str
    interval: Interval
    destination: str
    layout: str
    archived: dict[str, dict[str, Any]] = field(default_factory=dict)
    not_final: dict[str, dict[str, Any]] = field(default_factory=dict)
    no_audio: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: The not-final SIDs of the manifest as it was read: :meth:`merge` takes in only those added since.
    read_not_final: frozenset[str] = field(default_factory=frozenset)

    def add_archived(self, entry: Mapping[str, Any]) -> None:
        """Record an archived recording (replacing an earlier entry for it); it is final now."""
        checked = check_entry(dict(entry))
        sid = checked["recording_sid"]
        self.archived[sid] = checked
        self.not_final.pop(sid, None)
        self.no_audio.pop(sid, None)

    def set_deletion(self, recording_sid: str, state: str | None) -> None:
        """Set an archived recording's deletion state (see the module docstring)."""
        if state not in DELETION_STATES:
            raise ValueError(f"unknown deletion state {state!r}")
        self.archived[recording_sid]["deletion"] = state

    def set_unarchived(
        self, not_final: Iterable[Mapping[str, Any]], no_audio: Iterable[Mapping[str, Any]]
    ) -> None:
        """Take in this listing's recordings that were not archived: the not-final ones replace the earlier
        list (one that became final, or was deleted, leaves it); those without audio are added."""
        self.not_final = {}
        for recording in not_final:
            sid = recording.get("sid")
            if isinstance(sid, str) and sid not in self.archived:
                self.not_final[sid] = brief(recording)
        for recording in no_audio:
            sid = recording.get("sid")
            if isinstance(sid, str) and sid not in self.archived:
                self.no_audio[sid] = brief(recording)

    def merge(self, stored: Manifest) -> None:
        """Take in what the stored manifest of the interval holds that this one lacks: another run of the
        same interval (a backfill and a manual re-run, a retention task) may have written it since this one
        was read, and an entry on record is never dropped.

        Entries only the stored manifest has are added; for a recording both have, this run's entry stays
        (its copy was checked by this run) but a deletion the stored one records wins (``deleted`` is a fact
        about Telnyx; ``pending`` or ``failed`` means a delete may have happened, so a later run checks).
        An archived recording leaves the other lists; the stored ``no_audio`` are kept for the recordings
        this one does not name, and so are the stored ``not_final`` that another run added since this one
        was read (those it read were listed again by this run, which dropped them if they are gone).

        :param stored: the manifest of the same account and interval, as stored now.
        """
        for sid, theirs in stored.archived.items():
            ours = self.archived.get(sid)
            if ours is None:
                self.archived[sid] = dict(theirs)
            elif _DELETION_RANK[theirs.get("deletion")] > _DELETION_RANK[ours.get("deletion")]:
                ours["deletion"] = theirs.get("deletion")
        for name in ("no_audio", "not_final"):
            mine, other = getattr(self, name), getattr(stored, name)
            for sid, item in other.items():
                if name == "not_final" and sid in self.read_not_final:
                    continue  # named when this run read the manifest; its own listing decides now
                if sid not in self.archived and sid not in self.no_audio and sid not in mine:
                    mine[sid] = dict(item)
        for sid in self.archived:
            self.no_audio.pop(sid, None)
            self.not_final.pop(sid, None)
        for sid in self.no_audio:
            self.not_final.pop(sid, None)

    def totals(self) -> dict[str, int]:
        """Counts over the whole interval: archived recordings, their bytes, not final, no audio, deleted."""
        return {
            "recordings": len(self.archived),
            "bytes": sum(int(entry["size"]) for entry in self.archived.values()),
            "not_final": len(self.not_final),
            "no_audio": len(self.no_audio),
            "deleted": sum(entry.get("deletion") == "deleted" for entry in self.archived.values()),
        }

    def to_json(self) -> dict[str, Any]:
        """The manifest as JSON values, entries in a stable order."""
        return {
            "version": MANIFEST_VERSION,
            "account_sid": self.account_sid,
            "date_from": self.interval.start.isoformat(),
            "date_to": self.interval.end.isoformat(),
            "destination": self.destination,
            "layout": self.layout,
            "recordings": sorted(self.archived.values(), key=_order),
            "not_final": sorted(self.not_final.values(), key=_order),
            "no_audio": sorted(self.no_audio.values(), key=_order),
            "totals": self.totals(),
        }

    def dumps(self) -> bytes:
        """The manifest's bytes: the same content always gives the same bytes."""
        return (json.dumps(self.to_json(), sort_keys=True, indent=1, ensure_ascii=False) + "\n").encode()

    @classmethod
    def loads(cls, raw: bytes, *, account_sid: str, interval: Interval | None = None) -> Manifest:
        """A manifest read back; it must be of this account (and of ``interval``, when given).

        :raises ManifestError: not a manifest of version 1, another account or interval, a bad entry.
        """
        try:
            data = json.loads(raw)
        except ValueError as error:
            raise ManifestError(f"not JSON ({error})") from None
        if not isinstance(data, dict) or data.get("version") != MANIFEST_VERSION:
            raise ManifestError(f"not a manifest of version {MANIFEST_VERSION}")
        if data.get("account_sid") != account_sid:
            raise ManifestError(f"a manifest of account {data.get('account_sid')!r}, not {account_sid!r}")
        try:
            start = parse_moment("date_from", data.get("date_from"))
            end = parse_moment("date_to", data.get("date_to"))
        except TelnyxValidationError:
            raise ManifestError("its interval cannot be read") from None
        if interval is None:
            interval = Interval(start, end)
        if (start, end) != (interval.start, interval.end):
            raise ManifestError(f"a manifest of [{start.isoformat()}, {end.isoformat()}), not this interval")
        manifest = cls(account_sid, interval, str(data.get("destination", "")), str(data.get("layout", "")))
        for entry in _entries(data, "recordings"):
            manifest.add_archived(entry)
        for name in ("not_final", "no_audio"):
            target = getattr(manifest, name)
            for entry in _entries(data, name):
                sid = entry.get("recording_sid")
                if isinstance(sid, str) and sid not in manifest.archived:
                    target[sid] = {key: entry.get(key) for key in _BRIEF_FIELDS}
        manifest.read_not_final = frozenset(manifest.not_final)
        return manifest


def _entries(data: Mapping[str, Any], name: str) -> list[dict[str, Any]]:
    entries = data.get(name, [])
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise ManifestError(f"its {name!r} is not a list of objects")
    return entries
