"""The archive's side of the destination store: its root, manifests written atomically, copies checked.

Every path here is an ``airflow.sdk.ObjectStoragePath`` (``file://``, ``s3://``, ``gs://``...) with the
destination's connection. A manifest goes to a temporary object beside it and is moved into place once
whole (a rename on a local disk, a server-side copy on object stores): a reader sees the old manifest or the
new one, never a part.
"""

from __future__ import annotations

import bisect
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from telnyx_provider.archive_manifest import Manifest, ManifestError
from telnyx_provider.archive_plan import MANIFEST_FOLDER, interval_of_manifest, names_recording
from telnyx_provider.errors import RecordingStorageError, TelnyxValidationError
from telnyx_provider.hooks.media import path_url, read_back, resolve_destination, storage_conn_id

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from datetime import datetime
    from typing import Any

    from airflow.sdk import ObjectStoragePath

    from telnyx_provider.archive_plan import Interval

log = logging.getLogger(__name__)
_LOCAL_PROTOCOLS = ("", "file", "local")


@dataclass(frozen=True)
class ArchiveRoot:
    """The destination prefix of an archive: where recordings and ``_manifests/`` go.

    :param path: the prefix, as an ``ObjectStoragePath``.
    :param conn_id: its connection (the one given, or the path's own).
    """

    path: ObjectStoragePath
    conn_id: str | None

    @classmethod
    def of(cls, dst: object, dest_conn_id: str | None) -> ArchiveRoot:
        """The root named by ``dst`` (an ``ObjectStoragePath``, a URL or a local path; a trailing ``/`` or
        not: it is a prefix either way) with ``dest_conn_id`` (else an ``ObjectStoragePath``'s own).

        :raises TelnyxValidationError: ``dst`` is not a path.
        """
        from airflow.sdk import ObjectStoragePath

        if isinstance(dst, str) and dst.strip() and dst == dst.strip() and not dst.endswith("/"):
            dst += "/"
        path, _ = resolve_destination(dst, dest_conn_id)
        conn_id = storage_conn_id(path) if isinstance(dst, ObjectStoragePath) else dest_conn_id
        if not str(path.path).strip("/"):
            raise TelnyxValidationError("dst", dst, "a folder below the root of a store or disk")
        return cls(path, conn_id or dest_conn_id)

    @property
    def url(self) -> str:
        """The prefix as a URL without credentials, ending with ``/`` (``s3://bucket/calls/``)."""
        return path_url(self.path).rstrip("/") + "/"

    def child(self, name: str) -> ObjectStoragePath:
        """The object ``name`` (which may hold ``/``) below the prefix."""
        return resolve_destination(self.url + name, self.conn_id)[0]

    def manifest_path(self, interval: Interval) -> ObjectStoragePath:
        """Where the interval's manifest lives: ``{dst}/_manifests/{interval}.json``."""
        return self.child(interval.manifest_name)

    def read_manifest(self, interval: Interval, account_sid: str) -> Manifest | None:
        """The interval's manifest, or ``None`` when there is none yet.

        :raises RecordingStorageError: a manifest that cannot be used (the run stops rather than guess).
        """
        path = self.manifest_path(interval)
        if not path.exists():
            return None
        try:
            return Manifest.loads(path.read_bytes(), account_sid=account_sid, interval=interval)
        except ManifestError as error:
            raise RecordingStorageError(
                f"The manifest {path_url(path)} cannot be used: {error}. Nothing was archived; move it away "
                "to archive the interval afresh (its objects are kept and checked again)."
            ) from None

    def open_manifest(self, interval: Interval, account_sid: str, layout: str) -> Manifest:
        """The interval's manifest as stored, else a new one; naming this root and ``layout`` from now on
        (entries keep the paths they were stored at).

        :raises RecordingStorageError: a stored manifest that cannot be used.
        """
        manifest = self.read_manifest(interval, account_sid) or Manifest(
            account_sid, interval, self.url, layout
        )
        manifest.layout, manifest.destination = layout, self.url
        return manifest

    def write_manifest(self, manifest: Manifest) -> str:
        """Write the manifest atomically (temporary object, then moved into place) after merging what is
        stored now into it (:meth:`~telnyx_provider.archive_manifest.Manifest.merge`: another run of the
        interval may have written since);
        returns its URL.

        :raises RecordingStorageError: the stored manifest cannot be used (it is not overwritten).
        """
        path = self.manifest_path(manifest.interval)
        stored = self.read_manifest(manifest.interval, manifest.account_sid)
        if stored is not None:
            manifest.merge(stored)
        write_atomically(path, manifest.dumps())
        return path_url(path)

    def manifests(self) -> Iterator[ObjectStoragePath]:
        """Every manifest below ``{dst}/_manifests/`` (``*.json``), in name order."""
        folder = self.child(MANIFEST_FOLDER)
        if not folder.exists():
            return
        yield from sorted(
            (
                item
                for item in folder.iterdir()
                if item.name.endswith(".json") and not item.name.startswith(".")
            ),
            key=lambda item: item.name,
        )

    def matches(self, entry: Mapping[str, Any], *, rehash: bool) -> str | None:
        """Why the stored copy of a manifest entry does not match it (``None``: it does).

        The object must lie below this prefix and be named for the entry's recording
        (:func:`~telnyx_provider.archive_plan.names_recording`): an entry pointing at another recording's
        copy, or at a copy outside the archive, proves nothing.

        :param entry: the manifest entry (``recording_sid``, ``path``, ``size``, ``sha256``).
        :param rehash: read the object back and compare its SHA-256 too (else existence and size only).
        """
        url, root = str(entry["path"]), self.url
        if not url.startswith(root) or not names_recording(url[len(root) :], str(entry["recording_sid"])):
            return f"its copy {url} is not an object of recording {entry['recording_sid']} below {root}"
        path = resolve_destination(url, self.conn_id)[0]
        try:
            if not path.exists():
                return "the stored copy is missing"
            if rehash:
                size, sha256 = read_back(entry["path"], self.conn_id)
            else:
                size, sha256 = int(path.stat().st_size), entry["sha256"]
        except OSError as error:
            return f"the stored copy cannot be read ({type(error).__name__}: {error})"
        if size != entry["size"]:
            return f"the stored copy has {size} bytes, not {entry['size']}"
        if sha256 != entry["sha256"]:
            return f"the stored copy's sha256 is not {entry['sha256']}"
        return None


def write_atomically(path: ObjectStoragePath, data: bytes) -> None:
    """Write ``data`` to a temporary object beside ``path``, then move it into place; on failure remove it."""
    if (path.protocol or "file") in _LOCAL_PROTOCOLS:
        path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.part"
    try:
        with temporary.open("wb") as out:
            out.write(data)
        temporary.fs.mv(temporary.path, path.path)
    except BaseException:
        try:
            if temporary.exists():
                temporary.fs.rm_file(temporary.path)
        except Exception:  # keep the original failure
            log.warning("Could not remove the temporary manifest %s.", path_url(temporary), exc_info=True)
        raise


class ManifestCatalog:
    """The manifests below an archive's prefix, found by the interval their names give and each read only
    when a recording of that interval needs it (retention over years of manifests reads a handful).

    :param root: the archive's prefix.
    :param account_sid: the account; a manifest of another account (or that cannot be read) is named in the
        log once and proves nothing.
    :param logger: where to say so (the task's log).
    """

    def __init__(self, root: ArchiveRoot, account_sid: str, logger: Any = None) -> None:
        self.root, self.account_sid, self.log = root, account_sid, logger or log
        self._by_start: list[tuple[datetime, datetime, str]] = []
        self._paths: dict[str, ObjectStoragePath] = {}
        for path in root.manifests():
            interval = interval_of_manifest(path.name)
            if interval is None:
                self.log.warning("Skipping %s: not a manifest name the archive writes.", path_url(path))
                continue
            self._by_start.append((interval.start, interval.end, path.name))
            self._paths[path.name] = path
        self._by_start.sort()
        self._starts = [start for start, _, _ in self._by_start]
        self._longest = max((end - start for start, end, _ in self._by_start), default=timedelta(0))
        #: The manifests read so far, by file name.
        self.loaded: dict[str, Manifest] = {}
        self._unusable: set[str] = set()

    def __len__(self) -> int:
        return len(self._by_start)

    def covering(self, moment: datetime) -> list[tuple[str, Manifest]]:
        """The usable manifests whose interval holds ``moment``, by file name (read on first use)."""
        found = []
        index = bisect.bisect_right(self._starts, moment)
        while index > 0:
            index -= 1
            start, end, name = self._by_start[index]
            if start < moment - self._longest:
                break
            if moment < end and (manifest := self._load(name)) is not None:
                found.append((name, manifest))
        return found

    def _load(self, name: str) -> Manifest | None:
        if name in self.loaded or name in self._unusable:
            return self.loaded.get(name)
        path = self._paths[name]
        try:
            manifest = Manifest.loads(
                path.read_bytes(), account_sid=self.account_sid, interval=interval_of_manifest(name)
            )
        except ManifestError as error:
            self.log.warning("Skipping %s: %s.", path_url(path), error)
            self._unusable.add(name)
            return None
        self.loaded[name] = manifest
        return manifest
