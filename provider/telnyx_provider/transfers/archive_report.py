"""What an archive pass did, and what it tells the task: its result (XCom, asset extra) and its failure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from telnyx_provider._compat import AirflowException
from telnyx_provider.errors import RecordingStorageError

if TYPE_CHECKING:
    from telnyx_provider.archive_manifest import Manifest

#: SIDs named in the result (the manifest names them all).
LISTED_IN_RESULT = 100
#: Failures quoted in an error message.
QUOTED_FAILURES = 5


@dataclass
class PassOutcome:
    """What one pass did (the manifest holds the whole interval)."""

    downloaded: int = 0
    downloaded_bytes: int = 0
    already_stored: int = 0
    deleted: int = 0
    failed: dict[str, str] = field(default_factory=dict)  #: copies that failed, by SID: why
    delete_failed: dict[str, str] = field(default_factory=dict)
    stopped: bool = False  #: copies stopped early (failures in a row, or the task being stopped)


def result(manifest: Manifest, outcome: PassOutcome, manifest_url: str) -> dict[str, Any]:
    """The task's return value: the interval's totals, what this run did, the manifest's URL."""
    totals = manifest.totals()
    return {
        "manifest": manifest_url,
        "destination": manifest.destination,
        "account_sid": manifest.account_sid,
        "date_from": manifest.interval.start.isoformat(),
        "date_to": manifest.interval.end.isoformat(),
        "recordings": totals["recordings"],
        "bytes": totals["bytes"],
        "downloaded": outcome.downloaded,
        "downloaded_bytes": outcome.downloaded_bytes,
        "already_stored": outcome.already_stored,
        "not_final": totals["not_final"],
        "not_final_sids": sorted(manifest.not_final)[:LISTED_IN_RESULT],
        "no_audio": totals["no_audio"],
        "deleted": totals["deleted"],
    }


def failure(outcome: PassOutcome, manifest_url: str) -> AirflowException | None:
    """The error that fails the task once the manifest is written, if the pass left work undone."""
    if outcome.failed:
        return RecordingStorageError(
            f"{len(outcome.failed)} recording(s) could not be copied ({_quote(outcome.failed)}). What was "
            f"stored is in {manifest_url}; a retry copies the rest."
        )
    if outcome.delete_failed:
        return RecordingStorageError(
            f"{len(outcome.delete_failed)} recording(s) could not be deleted from Telnyx "
            f"({_quote(outcome.delete_failed)}); their copies are kept and {manifest_url} marks them "
            "'failed': a retry deletes them."
        )
    if outcome.stopped:
        return AirflowException(
            f"The archive stopped before it was complete; {manifest_url} holds what is done."
        )
    return None


def _quote(failures: dict[str, str]) -> str:
    return "; ".join(f"{sid}: {why}" for sid, why in sorted(failures.items())[:QUOTED_FAILURES])
