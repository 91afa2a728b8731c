"""RecordingsRetentionOperator: delete from Telnyx the recordings older than a period that a manifest proves
archived."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from telnyx_provider.archive_plan import (
    Disposition,
    check_destination,
    created_at,
    disposition,
    parse_keep_for,
)
from telnyx_provider.errors import RecordingStorageError, TelnyxApiError, TelnyxValidationError
from telnyx_provider.params import require_bool
from telnyx_provider.waiting import is_unresolved, retry_overrides

if TYPE_CHECKING:
    import os
    from collections.abc import Sequence
    from datetime import timedelta

    from airflow.sdk import Context, ObjectStoragePath

    from telnyx_provider.hooks.recording import RecordingHook
    from telnyx_provider.transfers.archive_store import ArchiveRoot, ManifestCatalog

#: SIDs named in the result per list (the log names them all).
LISTED_IN_RESULT = 100


@dataclass(frozen=True)
class _Proof:
    """What the manifests say of one old recording: the manifest proving it archived, or that it had no
    audio, or why it is refused."""

    manifest: str | None = None
    no_audio: bool = False
    why: str = ""


class RecordingsRetentionOperator(BaseOperator):
    """Delete from Telnyx every recording created more than ``keep_for`` ago that an archive proves stored.

    It lists the account's recordings created before ``now - keep_for`` (streamed) and deletes one only when
    a manifest of its own interval under ``{dst}/_manifests/`` (written by
    :class:`~telnyx_provider.transfers.archive.RecordingsArchiveOperator` with the same ``dst``; found by its
    name and read only then) names it, and its stored copy lies below ``dst``, is named for that recording,
    and reads back whole with the manifest's size and SHA-256 (``verify_sha256=False``: its size only).
    Anything else is refused and named in the log and the result: no manifest entry (not archived yet, or
    not final), a missing, different or misplaced copy, no audio (``absent``: nothing was archived, so
    nothing is deleted). Each recording about to be deleted is marked ``"deletion": "pending"`` in its
    manifest first (written before any delete), then ``"deleted"`` (or ``"failed"``); manifests are
    rewritten atomically, merged with what is stored. ``dry_run`` lists what would be deleted and deletes
    nothing.

    :param dst: the archive's destination prefix (as given to the archive operator).
    :param keep_for: how long recordings are kept: a ``timedelta``, seconds, or ISO 8601 (``P30D``, ``P7Y``;
        years and months are calendar ones).
    :param dest_conn_id: the destination's Airflow connection.
    :param dry_run: only list what would be deleted.
    :param verify_sha256: read each copy back whole and compare its SHA-256 (default); ``False`` checks its
        size only, blind to other bytes of the same length.
    :param page_size: recordings per list page.
    :param account_sid: the account; else the connection's login.
    :param telnyx_conn_id: the Telnyx connection.
    :param max_retries: retries of each request (``None``: the connection's).
    :param retry_max_wait: cap of one backoff wait, in seconds.
    :param retry_budget: seconds one request may take with its retries.
    :return: ``{"cutoff", "dry_run", "deleted", "would_delete", "refused", "no_audio", "delete_failed",
        "refused_sids", "would_delete_sids"}`` (counts, and up to 100 SIDs per list).
    """

    template_fields: Sequence[str] = ("dst", "dest_conn_id", "keep_for", "account_sid")
    ui_color = "#f0b400"

    def __init__(
        self,
        *,
        dst: str | os.PathLike[str] | ObjectStoragePath,
        keep_for: timedelta | float | str,
        dest_conn_id: str | None = None,
        dry_run: bool = False,
        verify_sha256: bool = True,
        page_size: int = 1000,
        account_sid: str | None = None,
        telnyx_conn_id: str = "telnyx_default",
        max_retries: int | None = None,
        retry_max_wait: float | None = None,
        retry_budget: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.dst, self.dest_conn_id, self.keep_for = dst, dest_conn_id, keep_for
        self.list_only = require_bool("dry_run", dry_run)  # self.dry_run is BaseOperator.dry_run()
        self.verify_sha256 = require_bool("verify_sha256", verify_sha256)
        if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
            raise TelnyxValidationError("page_size", page_size, "a whole number >= 1")
        self.page_size = page_size
        self.account_sid, self.telnyx_conn_id = account_sid, telnyx_conn_id
        self.retry_overrides = retry_overrides(max_retries, retry_max_wait, retry_budget)
        self._check(rendered=False)

    @cached_property
    def hook(self) -> RecordingHook:
        """The hook, built on first use."""
        from telnyx_provider.hooks.recording import RecordingHook

        return RecordingHook(telnyx_conn_id=self.telnyx_conn_id, **self.retry_overrides)

    def _check(self, *, rendered: bool) -> None:
        if rendered or not is_unresolved(self.keep_for):
            parse_keep_for(self.keep_for)
        ids = {"dest_conn_id": self.dest_conn_id, "account_sid": self.account_sid}
        check_destination(self.dst, ids, rendered=rendered)

    def execute(self, context: Context) -> dict[str, Any]:
        """Delete (or, in a dry run, list) the old recordings the manifests prove archived."""
        from telnyx_provider.transfers.archive_store import ArchiveRoot, ManifestCatalog

        self._check(rendered=True)
        period = parse_keep_for(self.keep_for)
        root = ArchiveRoot.of(self.dst, self.dest_conn_id)
        account = self.hook.config.resolve_account_sid(self.account_sid)
        cutoff = period.cutoff(datetime.now(timezone.utc))
        catalog = ManifestCatalog(root, account, self.log)
        self.log.info(
            "Deleting the recordings created before %s (kept for %s) that the %d manifest(s) below %s prove "
            "archived.",
            cutoff.isoformat(),
            period,
            len(catalog),
            root.url,
        )
        due: dict[str, str] = {}  # SID: the manifest that proves it
        refused: dict[str, str] = {}
        silent: list[str] = []
        listed = 0
        for recording in self.hook.iter_recordings(
            account_sid=account, page_size=self.page_size, date_created_before=cutoff
        ):  # streamed: only the verdicts are kept
            listed += 1
            sid = str(recording.get("sid"))
            verdict = self._proof(root, catalog, recording)
            if verdict.manifest is not None:
                due[sid] = verdict.manifest
            elif verdict.no_audio:
                silent.append(sid)
            else:
                refused[sid] = verdict.why
        self.log.info("%d recording(s) created before the cutoff; %d proven archived.", listed, len(due))
        for sid, why in sorted(refused.items()):
            self.log.warning("Not deleting recording %s: %s.", sid, why)
        if self.list_only:
            for sid, name in sorted(due.items()):
                entry = catalog.loaded[name].archived[sid]
                self.log.info("Would delete recording %s (archived at %s).", sid, entry["path"])
            deleted: list[str] = []
            failed: dict[str, str] = {}
        else:
            deleted, failed = self._delete_recorded(root, catalog, due, account)
        result = {
            "cutoff": cutoff.isoformat(),
            "dry_run": self.list_only,
            "deleted": len(deleted),
            "would_delete": len(due) if self.list_only else 0,
            "refused": len(refused),
            "no_audio": len(silent),
            "delete_failed": len(failed),
            "refused_sids": sorted(refused)[:LISTED_IN_RESULT],
            "would_delete_sids": sorted(due)[:LISTED_IN_RESULT] if self.list_only else [],
        }
        if failed:
            shown = "; ".join(f"{sid}: {why}" for sid, why in sorted(failed.items())[:5])
            raise RecordingStorageError(
                f"{len(failed)} recording(s) could not be deleted ({shown}); {len(deleted)} were. Run again."
            )
        return result

    def _proof(self, root: ArchiveRoot, catalog: ManifestCatalog, recording: dict[str, Any]) -> _Proof:
        """What the manifests of the recording's own interval say of it. Only a final recording with audio
        needs one (its listed status says the rest, so the manifests of days that only hold recordings
        without audio, which stay on Telnyx, are never read again)."""
        sid = str(recording.get("sid"))
        kind = disposition(recording)
        if kind is Disposition.NO_AUDIO:
            return _Proof(no_audio=True)
        if kind is Disposition.NOT_FINAL:
            return _Proof(why=f"it is not final (status {recording.get('status')}): not archived")
        created = created_at(recording)
        if created is None:
            return _Proof(why=f"its creation date {recording.get('date_created')!r} cannot be read")
        reasons = []
        for name, manifest in catalog.covering(created):
            entry = manifest.archived.get(sid)
            if entry is not None:
                why = root.matches(entry, rehash=self.verify_sha256)
                if why is None:
                    return _Proof(manifest=name)
                reasons.append(f"{why} ({name})")
        return _Proof(
            why="; ".join(reasons)
            or f"no manifest names it (status {recording.get('status')}, created {created.isoformat()}; "
            "the manifests of that moment were searched): not archived"
        )

    def _delete_recorded(
        self, root: ArchiveRoot, catalog: ManifestCatalog, due: dict[str, str], account: str
    ) -> tuple[list[str], dict[str, str]]:
        """Mark each due recording ``pending`` in its manifest (written first, so a delete never happens
        that its manifest cannot record), delete them, then record what was deleted."""
        names = sorted(set(due.values()))
        for sid, name in due.items():
            catalog.loaded[name].set_deletion(sid, "pending")
        for name in names:
            root.write_manifest(catalog.loaded[name])
        deleted, failed = self._delete(sorted(due), account)
        for sid in deleted:
            catalog.loaded[due[sid]].set_deletion(sid, "deleted")
        for sid in failed:
            catalog.loaded[due[sid]].set_deletion(sid, "failed")
        for name in names:
            root.write_manifest(catalog.loaded[name])
        return deleted, failed

    def _delete(self, sids: list[str], account: str) -> tuple[list[str], dict[str, str]]:
        deleted: list[str] = []
        failed: dict[str, str] = {}
        for sid in sids:
            try:
                self.hook.delete_recording(sid, account_sid=account)
            except TelnyxApiError as error:
                if error.status != 404:
                    failed[sid] = str(error)
                    self.log.error("Could not delete recording %s: %s", sid, error)
                    continue
            deleted.append(sid)
            self.log.info("Deleted recording %s: older than the period, its copy checks out.", sid)
        return deleted, failed
