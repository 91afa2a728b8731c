"""RecordingsArchiveOperator: every recording of an account created in a data interval, into a store."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from telnyx_provider._compat import AirflowException
from telnyx_provider.archive_plan import DEFAULT_LAYOUT, Layout, check_destination, parse_interval
from telnyx_provider.errors import TelnyxValidationError
from telnyx_provider.params import require_bool, require_choice, require_positive_number
from telnyx_provider.waiting import (
    DEFERRAL_MARGIN,
    default_deferrable,
    is_unresolved,
    require_seconds,
    retry_overrides,
    seconds,
)

if TYPE_CHECKING:
    import os
    from collections.abc import Sequence

    from airflow.sdk import Context, ObjectStoragePath

    from telnyx_provider.hooks.recording import RecordingHook
    from telnyx_provider.transfers.archive_run import ArchivePass

NOT_FINAL_CHOICES = ("skip", "wait")
VERIFY_CHOICES = ("sha256", "size")
#: Most copies in flight at once (each is a thread with its own connection pool).
MAX_ACTIVE_DOWNLOADS = 64
#: How long after ``date_to`` an interval is listed, by default (see ``settle``).
DEFAULT_SETTLE = timedelta(minutes=10)


class RecordingsArchiveOperator(BaseOperator):
    """Archive every finished recording of an account created in ``[date_from, date_to)`` into ``dst``.

    By default the interval is the DAG run's data interval, so a daily DAG with ``catchup=True`` archives
    day after day, backfills included. Recordings come from every source (TeXML ``<Record>``, ``<Dial
    record>``, the API, conferences, trunks...). Each is copied by
    :meth:`~telnyx_provider.hooks.recording.RecordingHook.download_recording` (fetched right before for a
    fresh media link; streamed, SHA-256 on the way, written atomically, its length proven) to
    ``{dst}/{layout}``, ``max_active_downloads`` at a time. The interval's manifest
    (``{dst}/_manifests/{date_from}_{date_to}.json``, see :mod:`telnyx_provider.archive_manifest`) records
    each recording's SID, call, path, size, SHA-256 and duration, and is written atomically at the end.

    Idempotent and resumable: a recording the manifest (or, on Airflow 3.3, the task state store of a
    killed try) names is not downloaded again when its stored copy still has that size and SHA-256 (read
    back; ``verify_existing="size"`` checks the size only). Recordings not final yet are named in the log
    and the manifest and left for a later run (``not_final="skip"``) or waited for (``"wait"``: on the
    triggerer with one listing per poll for all of them when ``deferrable``, else in the task), up to
    ``not_final_timeout``. Recordings that ended without audio (``absent``) are named in the manifest.

    An interval is listed only ``settle`` after ``date_to`` (the task defers until then when
    ``deferrable``, else waits): Telnyx's list is eventually consistent and its clock is not ours, so a
    recording created just before ``date_to`` may show up late, and no run of another interval holds it.

    With ``delete_after_archive``, a recording is deleted from Telnyx only once its stored copy was read
    back and matched; the manifest records ``deletion`` (``pending``, ``deleted``, ``failed``) and a failed
    delete fails the task after the manifest is written (a retry deletes again; the copy is never touched).

    Returns the run's figures and the manifest's URL; with ``outlets=[Asset(...)]`` each interval adds one
    asset event whose extra is that dict (:func:`telnyx_provider.assets.archive_manifests_asset`); lineage
    reports the prefix and the manifest.

    :param dst: the destination prefix: an ``ObjectStoragePath``, a URL (``s3://bucket/calls``) or a path.
    :param dest_conn_id: the destination's Airflow connection.
    :param date_from: start of the interval (an aware datetime or ISO 8601; default the data interval's).
    :param date_to: end of the interval, excluded.
    :param layout: the objects' names below ``dst`` (see :class:`~telnyx_provider.archive_plan.Layout`).
    :param max_active_downloads: copies in flight at once (1 to 64).
    :param delete_after_archive: delete each recording from Telnyx once its copy is proven.
    :param not_final: ``"skip"`` or ``"wait"`` for recordings not final yet.
    :param settle: how long after ``date_to`` the interval is listed (seconds or ``timedelta``; default 10
        minutes; 0 lists at once): longer than Telnyx's list lag plus how far its clock may be behind ours.
    :param deferrable: wait on the triggerer (default ``[operators] default_deferrable``).
    :param poll_interval: seconds between two listings while waiting.
    :param not_final_timeout: how long to wait for them once the final ones are stored (seconds or
        ``timedelta``); then they are left for a later run.
    :param verify_existing: ``"sha256"`` (read the stored copy back) or ``"size"``.
    :param page_size: recordings per list page.
    :param account_sid: the account; else the connection's login.
    :param telnyx_conn_id: the Telnyx connection.
    :param max_retries: retries of each request (``None``: the connection's).
    :param retry_max_wait: cap of one backoff wait, in seconds.
    :param retry_budget: seconds one request (a copy included) may take with its retries.
    :return: ``{"manifest", "destination", "account_sid", "date_from", "date_to", "recordings", "bytes",
        "downloaded", "downloaded_bytes", "already_stored", "not_final", "not_final_sids", "no_audio",
        "deleted"}``.
    """

    template_fields: Sequence[str] = ("dst", "dest_conn_id", "date_from", "date_to", "layout", "account_sid")
    ui_color = "#00c08b"

    def __init__(
        self,
        *,
        dst: str | os.PathLike[str] | ObjectStoragePath,
        dest_conn_id: str | None = None,
        date_from: Any = "{{ data_interval_start }}",
        date_to: Any = "{{ data_interval_end }}",
        layout: str = DEFAULT_LAYOUT,
        max_active_downloads: int = 4,
        delete_after_archive: bool = False,
        not_final: str = "skip",
        settle: float | timedelta = DEFAULT_SETTLE,
        deferrable: bool | None = None,
        poll_interval: float = 60.0,
        not_final_timeout: float | timedelta = timedelta(hours=6),
        verify_existing: str = "sha256",
        page_size: int = 1000,
        account_sid: str | None = None,
        telnyx_conn_id: str = "telnyx_default",
        max_retries: int | None = None,
        retry_max_wait: float | None = None,
        retry_budget: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.dst, self.dest_conn_id = dst, dest_conn_id
        self.date_from, self.date_to, self.layout = date_from, date_to, layout
        if isinstance(max_active_downloads, bool) or not isinstance(max_active_downloads, int):
            raise TelnyxValidationError("max_active_downloads", max_active_downloads, "a whole number")
        if not 1 <= max_active_downloads <= MAX_ACTIVE_DOWNLOADS:
            raise TelnyxValidationError(
                "max_active_downloads", max_active_downloads, f"from 1 to {MAX_ACTIVE_DOWNLOADS}"
            )
        self.max_active_downloads = max_active_downloads
        self.delete_after_archive = require_bool("delete_after_archive", delete_after_archive)
        self.not_final = require_choice("not_final", not_final, NOT_FINAL_CHOICES)
        self.settle = require_seconds("settle", settle, allow_zero=True)
        self.deferrable = (
            default_deferrable() if deferrable is None else require_bool("deferrable", deferrable)
        )
        self.poll_interval = require_positive_number("poll_interval", poll_interval)
        self.not_final_timeout = require_positive_number("not_final_timeout", seconds(not_final_timeout))
        self.verify_existing = require_choice("verify_existing", verify_existing, VERIFY_CHOICES)
        if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
            raise TelnyxValidationError("page_size", page_size, "a whole number >= 1")
        self.page_size = page_size
        self.account_sid, self.telnyx_conn_id = account_sid, telnyx_conn_id
        self.retry_overrides = retry_overrides(max_retries, retry_max_wait, retry_budget)
        self._stop = threading.Event()
        self._summary: dict[str, Any] | None = None
        self._check(rendered=False)

    @cached_property
    def hook(self) -> RecordingHook:
        """The task's hook (listing, and the first worker's), built on first use."""
        return self._new_hook()

    def _new_hook(self) -> RecordingHook:
        from telnyx_provider.hooks.recording import RecordingHook

        return RecordingHook(telnyx_conn_id=self.telnyx_conn_id, **self.retry_overrides)

    def _check(self, *, rendered: bool) -> None:
        """Check the templated arguments (literal ones when the DAG is parsed; all before any request)."""

        def known(value: object) -> bool:
            return rendered or not is_unresolved(value)

        if known(self.layout):
            Layout(self.layout)
        if known(self.date_from) and known(self.date_to):
            parse_interval(self.date_from, self.date_to)
        ids = {"dest_conn_id": self.dest_conn_id, "account_sid": self.account_sid}
        check_destination(self.dst, ids, rendered=rendered)

    def execute(self, context: Context) -> dict[str, Any]:
        """Archive the interval once it has settled; defer when told to wait for recordings not final yet."""
        self._check(rendered=True)
        interval = parse_interval(self.date_from, self.date_to)
        settled_at = interval.end + timedelta(seconds=self.settle)
        wait = (settled_at - datetime.now(timezone.utc)).total_seconds()
        if wait > 0:
            self.log.info(
                "Listing [%s, %s) at %s, once it has settled (settle=%s s): recordings listed late are in.",
                interval.start.isoformat(),
                interval.end.isoformat(),
                settled_at.isoformat(),
                self.settle,
            )
            if self.deferrable:
                from airflow.providers.standard.triggers.temporal import DateTimeTrigger

                self.defer(trigger=DateTimeTrigger(settled_at), method_name="execute_settled")
            if self._stop.wait(wait):
                raise AirflowException("Stopped while the interval settled; nothing was archived.")
        return self._archive(context, resumed=False)

    def execute_settled(self, context: Context, event: Any = None) -> dict[str, Any]:
        """Back from waiting for the interval to settle: archive it."""
        return self._archive(context, resumed=False)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Back from the trigger: archive what became final (what was stored before is trusted)."""
        status = event.get("status") if isinstance(event, dict) else None
        if status == "error":
            raise AirflowException(f"Waiting for the interval's recordings failed: {event.get('message')}")  # type: ignore[union-attr]
        if status not in ("final", "timeout"):
            raise AirflowException(f"Unexpected event from the archive's trigger: {event!r}")
        if status == "timeout":
            self.log.warning("Still not final after %s s: %s", self.not_final_timeout, event.get("pending"))  # type: ignore[union-attr]
        return self._archive(context, resumed=True)

    def on_kill(self) -> None:
        """Start no more copies (those in flight end; the manifest of what is done is written)."""
        self._stop.set()

    def _archive(self, context: Context, *, resumed: bool) -> dict[str, Any]:
        from telnyx_provider.transfers import archive_report as report
        from telnyx_provider.transfers.archive_progress import ArchiveProgress, identity
        from telnyx_provider.transfers.archive_run import ArchivePass, HookPool
        from telnyx_provider.transfers.archive_store import ArchiveRoot

        self._check(rendered=True)
        interval, layout = parse_interval(self.date_from, self.date_to), Layout(self.layout)
        root = ArchiveRoot.of(self.dst, self.dest_conn_id)
        account = self.hook.config.resolve_account_sid(self.account_sid)
        manifest = root.open_manifest(interval, account, layout.template)
        progress = ArchiveProgress.of(context, identity(account, interval.name, root.url, layout.template))
        if progress is not None and (recovered := progress.recover(manifest)):
            self.log.info("%d recording(s) stored by an earlier try are checked, not copied.", recovered)
        hooks = HookPool(self._new_hook)
        run = ArchivePass(
            root=root,
            interval=interval,
            account_sid=account,
            layout=layout,
            manifest=manifest,
            hooks=hooks,
            workers=self.max_active_downloads,
            progress=progress,
            rehash=self.verify_existing == "sha256",
            stop=self._stop,
        )
        if resumed:  # this task wrote (or checked) them before it deferred
            run.verified.update(manifest.archived)
        self.log.info(
            "Archiving the recordings of %s created in [%s, %s) into %s.",
            account,
            interval.start.isoformat(),
            interval.end.isoformat(),
            root.url,
        )
        try:
            self._passes(run, resumed)
        except BaseException:
            if run.listed:  # what is stored stays on record, whatever stopped the run
                self._write_quietly(run)
            raise
        finally:
            hooks.close()
        manifest_url = root.write_manifest(manifest)
        summary = report.result(manifest, run.outcome, manifest_url)
        self.log.info(
            "Interval archived: %d recording(s), %d bytes, in %s; this run copied %d and found %d stored.",
            summary["recordings"],
            summary["bytes"],
            manifest_url,
            summary["downloaded"],
            summary["already_stored"],
        )
        failure = report.failure(run.outcome, manifest_url)
        if failure is not None:
            raise failure
        if self.not_final == "wait" and self.deferrable and manifest.not_final and not resumed:
            self._defer(interval, sorted(manifest.not_final), account)
        self._summary = summary
        self._add_asset_events(context, summary)
        return summary

    def _passes(self, run: ArchivePass, resumed: bool) -> None:
        """List and copy (again while waiting in the task), then delete what is proven."""
        manifest, deadline = run.manifest, None
        waiting = self.not_final == "wait" and not self.deferrable and not resumed
        while True:
            listing = run.list_interval(self.hook, self.page_size)
            manifest.set_unarchived(listing.not_final, listing.no_audio)
            self.log.info(
                "Listed %d final, %d without audio, %d not final yet.",
                len(listing.archive),
                len(listing.no_audio),
                len(listing.not_final),
            )
            run.copy(listing.archive)
            # The wait for the not-final ones starts once what is final is stored.
            deadline = time.monotonic() + self.not_final_timeout if deadline is None else deadline
            if not (
                waiting and manifest.not_final and time.monotonic() < deadline and not run.outcome.stopped
            ):
                break
            self.log.info(
                "Waiting %s s for %d recording(s) not final yet.", self.poll_interval, len(manifest.not_final)
            )
            self._stop.wait(min(self.poll_interval, max(0.0, deadline - time.monotonic())))
        for sid, item in sorted(manifest.not_final.items()):
            self.log.warning(
                "Recording %s (call %s) is %s: left for a later run.", sid, item["call_sid"], item["status"]
            )
        if self.delete_after_archive:
            for sid, entry in manifest.archived.items():
                if entry.get("deletion") != "deleted":
                    manifest.set_deletion(sid, "pending")
            run.root.write_manifest(manifest)  # the copies are on record before any delete
            run.delete()

    def _write_quietly(self, run: ArchivePass) -> None:
        try:
            url = run.root.write_manifest(run.manifest)
        except Exception:  # the original failure matters more; the task state store still has the progress
            self.log.exception("Could not write the manifest after the failure below.")
        else:
            self.log.info("Wrote %s with what was stored before the failure below.", url)

    def _defer(self, interval: Any, pending: list[str], account: str) -> None:
        from telnyx_provider.triggers.archive import RecordingsIntervalTrigger

        trigger = RecordingsIntervalTrigger(
            pending,
            interval.start.isoformat(),
            interval.end.isoformat(),
            account_sid=account,
            telnyx_conn_id=self.telnyx_conn_id,
            poll_interval=self.poll_interval,
            deadline=time.time() + self.not_final_timeout,
            page_size=self.page_size,
            **{key: value for key, value in self.retry_overrides.items()},
        )
        self.log.info("Deferring until %d recording(s) are final.", len(pending))
        self.defer(
            trigger=trigger,
            method_name="execute_complete",
            timeout=timedelta(seconds=self.not_final_timeout) + DEFERRAL_MARGIN,
        )

    def _add_asset_events(self, context: Context, summary: dict[str, Any]) -> None:
        from airflow.sdk import Asset, AssetAlias

        events = context.get("outlet_events")
        if events is None:
            return
        extra = {key: value for key, value in summary.items() if key != "not_final_sids"}
        for outlet in self.outlets or ():
            if isinstance(outlet, Asset):
                events[outlet].extra.update(extra)
            elif isinstance(outlet, AssetAlias):
                events[outlet].add(Asset(uri=summary["manifest"]), extra=dict(extra))

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: the destination prefix (what this run wrote) and the manifest as outputs, the
        interval as a run facet. Called only by the OpenLineage provider."""
        if self._summary is None:
            return None
        from telnyx_provider.lineage import archive_lineage

        return archive_lineage(self._summary)
