"""One pass over an interval: list it, copy what is final (bounded concurrency), then delete what is proven.

:class:`ArchivePass` does the I/O of :class:`~telnyx_provider.transfers.archive.RecordingsArchiveOperator`.
Each copy is :func:`telnyx_provider.hooks.media.download_recording` (the recording fetched right before, so a
fresh media link; streamed, hashed, written atomically, retried under the connection's policy) on a worker
thread with a hook of its own. Results come back to the calling thread, which alone touches the manifest and
the task state store, in the order copies finish. A copy that still fails after its retries is named and
the others go on; as many failures in a row as there are workers (an outage, not one bad recording) stop new
copies, and the pass ends with what it has.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from telnyx_provider.archive_manifest import archived_entry, brief
from telnyx_provider.archive_plan import LAYOUT_FIELDS, Disposition, disposition
from telnyx_provider.errors import RecordingFailedError, RecordingStorageError, TelnyxApiError
from telnyx_provider.hooks import media
from telnyx_provider.media_api import is_media_failure
from telnyx_provider.transfers.archive_report import PassOutcome

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from telnyx_provider.archive_manifest import Manifest
    from telnyx_provider.archive_plan import Interval, Layout
    from telnyx_provider.hooks.recording import RecordingHook
    from telnyx_provider.transfers.archive_progress import ArchiveProgress
    from telnyx_provider.transfers.archive_store import ArchiveRoot

log = logging.getLogger(__name__)
#: Fields of a listed recording kept for the pass (the rest, media link included, is dropped at once).
KEPT_FIELDS = (
    "sid",
    *(name for name in LAYOUT_FIELDS if name not in ("recording_sid", "ext")),
    "status",
    "error_code",
)


@dataclass
class Listing:
    """The interval's recordings as listed, sorted into what to copy, without audio and not final yet."""

    archive: list[dict[str, Any]] = field(default_factory=list)
    no_audio: list[dict[str, Any]] = field(default_factory=list)
    not_final: list[dict[str, Any]] = field(default_factory=list)


class HookPool:
    """One :class:`~telnyx_provider.hooks.recording.RecordingHook` (one ``requests.Session``) per worker
    thread, all closed together.

    :param make: builds a hook.
    """

    def __init__(self, make: Callable[[], RecordingHook]) -> None:
        self._make = make
        self._local = threading.local()
        self._lock = threading.Lock()
        self._hooks: list[RecordingHook] = []

    def get(self) -> RecordingHook:
        """This thread's hook."""
        hook: RecordingHook | None = getattr(self._local, "hook", None)
        if hook is None:
            hook = self._local.hook = self._make()
            with self._lock:
                self._hooks.append(hook)
        return hook

    def close(self) -> None:
        """Close every hook's pooled connections."""
        with self._lock:
            hooks, self._hooks = self._hooks, []
        for hook in hooks:
            hook.close()


class ArchivePass:
    """List the interval, copy what is final, delete what is proven; see the module docstring.

    :param root: the destination prefix.
    :param interval: the interval.
    :param account_sid: the account.
    :param layout: names each object below ``root``.
    :param manifest: the interval's manifest so far (updated in place).
    :param hooks: the worker threads' hooks.
    :param workers: copies (and deletes) in flight at once.
    :param progress: the task state store's record, or ``None``.
    :param rehash: read a copy already stored back whole (SHA-256) before trusting it; else its size only.
    :param stop: set to stop starting copies (the task is being stopped).
    """

    def __init__(
        self,
        *,
        root: ArchiveRoot,
        interval: Interval,
        account_sid: str,
        layout: Layout,
        manifest: Manifest,
        hooks: HookPool,
        workers: int,
        progress: ArchiveProgress | None = None,
        rehash: bool = True,
        stop: threading.Event | None = None,
    ) -> None:
        self.root, self.interval, self.account_sid, self.layout = root, interval, account_sid, layout
        self.manifest, self.hooks, self.workers, self.progress = manifest, hooks, workers, progress
        self.rehash = rehash
        self.stop = stop or threading.Event()
        #: SIDs whose copy was written, or checked, during this task's execution (not copied again).
        self.verified: set[str] = set()
        #: Whether the interval was listed (so the manifest is worth writing, even after a failure).
        self.listed = False
        #: SIDs whose stored copy was read back whole and matched its entry (what a delete needs).
        self.read_back: set[str] = set()
        self.outcome = PassOutcome()

    def list_interval(self, hook: RecordingHook, page_size: int) -> Listing:
        """Every recording created in the interval (``DateCreated`` filters both ways, every page)."""
        listing, seen = Listing(), set()
        for item in hook.iter_recordings(
            account_sid=self.account_sid,
            page_size=page_size,
            date_created_after=self.interval.start,
            date_created_before=self.interval.end,
        ):
            sid = item.get("sid")
            if not isinstance(sid, str) or sid in seen or not self.interval.contains(item):
                continue  # a page served twice, or the service's bound second
            seen.add(sid)
            slim = {name: item.get(name) for name in KEPT_FIELDS}
            kind = disposition(slim)
            target = {Disposition.ARCHIVE: listing.archive, Disposition.NO_AUDIO: listing.no_audio}
            target.get(kind, listing.not_final).append(slim)
        self.listed = True
        return listing

    def copy(self, recordings: Iterable[dict[str, Any]]) -> None:
        """Copy each recording not stored yet (checking those the manifest names); record each as it lands."""
        existing = dict(self.manifest.archived)
        todo = (
            (recording, existing.get(recording["sid"]))
            for recording in recordings
            if recording["sid"] not in self.verified
        )
        for recording, result in self._run(self._copy_one, todo, "copy", failed=_copy_failure):
            if isinstance(result, BaseException):
                self._copy_failed(recording, result)
                continue
            entry, downloaded = result
            fresh = (
                entry.get("deletion") is None and self.manifest.archived.get(entry["recording_sid"]) != entry
            )
            self.manifest.add_archived(entry)
            self.verified.add(entry["recording_sid"])
            if self.rehash:
                self.read_back.add(entry["recording_sid"])
            if downloaded:
                self.outcome.downloaded += 1
                self.outcome.downloaded_bytes += int(entry["size"])
            else:
                self.outcome.already_stored += 1
            if fresh and self.progress is not None:
                self.progress.add([entry])

    def delete(self) -> None:
        """Delete from Telnyx each archived recording not deleted yet, once its copy read back and matched."""
        due = [
            (entry, None)
            for entry in sorted(self.manifest.archived.values(), key=lambda item: item["recording_sid"])
            if entry.get("deletion") != "deleted"
        ]
        for entry, result in self._run(self._delete_one, iter(due), "delete"):
            sid = entry["recording_sid"]
            if isinstance(result, BaseException):
                self.manifest.set_deletion(sid, "failed")
                self.outcome.delete_failed[sid] = _reason(result)
                log.error(
                    "Could not delete recording %s from Telnyx (its copy is kept): %s", sid, _reason(result)
                )
                continue
            self.manifest.set_deletion(sid, "deleted")
            self.outcome.deleted += 1

    # -- the workers ------------------------------------------------------------------------------------

    def _copy_one(
        self, recording: dict[str, Any], entry: dict[str, Any] | None
    ) -> tuple[dict[str, Any], bool]:
        """The recording's manifest entry once its stored copy checks out (read back whole, or its size
        only), and whether it was downloaded now. A fresh copy is checked the same way before it is put on
        record: the stream was whole, but only the store's own bytes are an archive."""
        sid = recording["sid"]
        if entry is not None:
            why = self.root.matches(entry, rehash=self.rehash)
            if why is None:
                return entry, False
            log.warning("Copying recording %s again: %s (%s).", sid, why, entry["path"])
        hook = self.hooks.get()
        stored = media.download_recording(
            hook,
            sid,
            self.root.url,
            account_sid=self.account_sid,
            dest_conn_id=self.root.conn_id,
            overwrite=True,  # an object a killed try stored without recording it: the same audio again
            object_name=lambda fetched, ext: self.layout.render({**recording, **fetched}, ext),
        )
        entry = archived_entry(stored, recording)
        why = self.root.matches(entry, rehash=self.rehash)
        if why is not None:
            raise RecordingStorageError(
                f"the copy at {entry['path']} does not read back as it was written ({why}): not on record"
            )
        return entry, True

    def _delete_one(self, entry: dict[str, Any], _: None) -> None:
        sid = entry["recording_sid"]
        if sid not in self.read_back:  # a fresh copy too: the stored object itself is what must match
            why = self.root.matches(entry, rehash=True)
            if why is not None:
                raise RecordingStorageError(f"{why}: the recording was NOT deleted from Telnyx")
        try:
            self.hooks.get().delete_recording(sid, account_sid=self.account_sid)
        except TelnyxApiError as error:
            if error.status != 404:
                raise
            log.info("Recording %s was already gone from Telnyx (HTTP 404).", sid)

    # -- plumbing -----------------------------------------------------------------------------------------

    def _run(
        self,
        work: Callable[..., Any],
        items: Iterator[tuple[dict[str, Any], Any]],
        what: str,
        failed: Callable[[BaseException], bool] = lambda _: True,
    ) -> Iterator[tuple[dict[str, Any], Any]]:
        """Run ``work(item, extra)`` on the pool, at most ``workers`` at once; yield ``(item, result or
        exception)`` on this thread as they finish. Stops starting new ones after ``workers`` failures in a
        row (exceptions for which ``failed`` is true), or once :attr:`stop` is set."""
        in_flight: dict[Future[Any], dict[str, Any]] = {}
        failures_in_row = 0
        with ThreadPoolExecutor(
            max_workers=self.workers, thread_name_prefix=f"telnyx-archive-{what}"
        ) as pool:
            while True:
                while len(in_flight) < self.workers and not self._stopping(failures_in_row, what):
                    task = next(items, None)
                    if task is None:
                        break
                    in_flight[pool.submit(work, *task)] = task[0]
                if not in_flight:
                    return
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in sorted(done, key=lambda each: str(in_flight[each].get("sid", ""))):
                    item = in_flight.pop(future)
                    error = future.exception()
                    failures_in_row = failures_in_row + 1 if error is not None and failed(error) else 0
                    yield item, error if error is not None else future.result()

    def _stopping(self, failures_in_row: int, what: str) -> bool:
        if self.stop.is_set() or failures_in_row >= self.workers:
            if not self.outcome.stopped:
                log.warning(
                    "Starting no more %s: %s.",
                    what,
                    "the task is being stopped"
                    if self.stop.is_set()
                    else f"{failures_in_row} failures in a row",
                )
            self.outcome.stopped = True
            return True
        return False

    def _copy_failed(self, recording: dict[str, Any], error: BaseException) -> None:
        sid = recording["sid"]
        if not _copy_failure(error):
            # It ended without audio, or was deleted, after it was listed: nothing to copy.
            gone = {**recording, "status": "deleted" if isinstance(error, TelnyxApiError) else "absent"}
            self.manifest.no_audio[sid] = brief(gone)
            log.warning("Recording %s has no audio to copy any more: %s", sid, _reason(error))
            return
        self.outcome.failed[sid] = _reason(error)
        log.error("Could not copy recording %s: %s", sid, _reason(error))


def _copy_failure(error: BaseException) -> bool:
    """Whether a copy's exception is a failure; not when the recording ended without audio, or was deleted
    (by someone else: the API's 404, not a media link's), after it was listed: there is nothing to copy,
    and nothing is wrong."""
    gone = isinstance(error, TelnyxApiError) and error.status == 404 and not is_media_failure(error)
    return not (gone or isinstance(error, RecordingFailedError))


def _reason(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"
