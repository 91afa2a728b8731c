"""RecordingsRetentionOperator: delete from Telnyx the recordings older than a period that a manifest proves
archived."""

from __future__ import annotations

from datetime import datetime, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from telnyx_provider.archive_manifest import Manifest, ManifestError
from telnyx_provider.archive_plan import check_destination, parse_keep_for
from telnyx_provider.errors import RecordingStorageError, TelnyxApiError, TelnyxValidationError
from telnyx_provider.params import require_bool
from telnyx_provider.waiting import is_unresolved, retry_overrides

if TYPE_CHECKING:
    import os
    from collections.abc import Sequence
    from datetime import timedelta

    from airflow.sdk import Context, ObjectStoragePath

    from telnyx_provider.hooks.recording import RecordingHook
    from telnyx_provider.transfers.archive_store import ArchiveRoot

#: SIDs named in the result per list (the log names them all).
LISTED_IN_RESULT = 100


class RecordingsRetentionOperator(BaseOperator):
    """Delete from Telnyx every recording created more than ``keep_for`` ago that an archive proves stored.

    It reads every manifest under ``{dst}/_manifests/`` (written by
    :class:`~telnyx_provider.transfers.archive.RecordingsArchiveOperator` with the same ``dst``), lists the
    account's recordings created before ``now - keep_for``, and deletes one only when a manifest names it
    and its stored copy still exists with the manifest's size (and, with ``verify_sha256``, its SHA-256,
    read back whole). Anything else is refused and named in the log and the result: no manifest entry (not
    archived yet, or not final), a missing or different copy, no audio (``absent``: nothing was archived, so
    nothing is deleted). Each delete is recorded in its manifest (``deletion: "deleted"``), rewritten
    atomically at the end. ``dry_run`` lists what would be deleted and deletes nothing.

    :param dst: the archive's destination prefix (as given to the archive operator).
    :param keep_for: how long recordings are kept: a ``timedelta``, seconds, or ISO 8601 (``P30D``, ``P7Y``;
        years and months are calendar ones).
    :param dest_conn_id: the destination's Airflow connection.
    :param dry_run: only list what would be deleted.
    :param verify_sha256: read each copy back and compare its SHA-256 too (else existence and size).
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
        verify_sha256: bool = False,
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
        from telnyx_provider.transfers.archive_store import ArchiveRoot

        self._check(rendered=True)
        period = parse_keep_for(self.keep_for)
        root = ArchiveRoot.of(self.dst, self.dest_conn_id)
        account = self.hook.config.resolve_account_sid(self.account_sid)
        cutoff = period.cutoff(datetime.now(timezone.utc))
        manifests = self._manifests(root, account)
        index = {
            sid: (key, entry)
            for key, manifest in manifests.items()
            for sid, entry in manifest.archived.items()
        }
        no_audio = {sid for manifest in manifests.values() for sid in manifest.no_audio}
        old = list(
            self.hook.iter_recordings(
                account_sid=account, page_size=self.page_size, date_created_before=cutoff
            )
        )
        self.log.info(
            "%d recording(s) created before %s (kept for %s); %d manifest(s) name %d archived.",
            len(old),
            cutoff.isoformat(),
            period,
            len(manifests),
            len(index),
        )
        due, refused, silent = [], {}, []
        for recording in old:
            sid = str(recording.get("sid"))
            if sid in index:
                why = root.matches(index[sid][1], rehash=self.verify_sha256)
                if why is None:
                    due.append(sid)
                else:
                    refused[sid] = why
            elif sid in no_audio:
                silent.append(sid)
            else:
                refused[sid] = f"no manifest names it (status {recording.get('status')}): not archived"
        for sid, why in sorted(refused.items()):
            self.log.warning("Not deleting recording %s: %s.", sid, why)
        deleted, failed = ([], {}) if self.list_only else self._delete(due, account)
        for sid in due if self.list_only else ():
            self.log.info("Would delete recording %s (archived at %s).", sid, index[sid][1]["path"])
        for sid in deleted:
            manifests[index[sid][0]].set_deletion(sid, "deleted")
        for key in sorted({index[sid][0] for sid in deleted}):
            root.write_manifest(manifests[key])
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

    def _manifests(self, root: ArchiveRoot, account: str) -> dict[str, Manifest]:
        """Every readable manifest of this account, by its name; others are named in the log and skipped."""
        manifests: dict[str, Manifest] = {}
        for path in root.manifests():
            try:
                manifests[path.name] = Manifest.loads(path.read_bytes(), account_sid=account)
            except ManifestError as error:
                self.log.warning("Skipping %s: %s.", path.name, error)
        return manifests

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
