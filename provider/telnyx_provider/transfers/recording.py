"""RecordingToStorageOperator: a recording's audio into any object store (file, S3, GCS...).

:class:`~telnyx_provider.transfers.archive.RecordingsArchiveOperator` (every recording of a data interval) and
:class:`~telnyx_provider.transfers.retention.RecordingsRetentionOperator` are importable from here too.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from telnyx_provider.errors import RecordingStorageError, TelnyxValidationError
from telnyx_provider.links import TelnyxRecordingLink
from telnyx_provider.params import require_bool, require_identifier, resolve_recording
from telnyx_provider.waiting import is_unresolved

if TYPE_CHECKING:
    import os
    from collections.abc import Sequence

    from airflow.sdk import Context, ObjectStoragePath

    from telnyx_provider.hooks.recording import RecordingHook


class RecordingToStorageOperator(BaseOperator):
    """Store a final recording's audio in any object store Airflow reaches; returns what was stored.

    Follows Airflow's ``FileTransferOperator`` (``dst``, ``dest_conn_id``, ``overwrite``). The audio is
    streamed, hashed (SHA-256) and written atomically by
    :meth:`~telnyx_provider.hooks.recording.RecordingHook.download_recording`; a recording that is not final
    is refused before anything is written.

    With ``outlets=[Asset(...)]`` the stored recording is the asset event's extra, so a DAG scheduled on
    that asset finds it in ``triggering_asset_events``; an ``AssetAlias`` outlet gets an event for the
    stored object's own URL. With the OpenLineage provider installed, the stored object is reported as the
    output dataset (with its size) and the recording SID as a run facet.

    :param recording_sid: the recording; or give ``recording_uri``.
    :param recording_uri: the recording's ``uri`` (either form), from which the SID and account are read.
    :param dst: an ``ObjectStoragePath``, a URL (``file:///...``, ``s3://...``, ``gs://...``) or a local path;
        ending in ``/``, a folder where the file is named ``{recording_sid}.{ext}``.
    :param dest_conn_id: the Airflow connection of the destination store.
    :param overwrite: replace an existing object (else the task fails before downloading).
    :param delete_after_upload: delete the Telnyx recording once the stored object was read back and its
        size and SHA-256 match what was downloaded (never otherwise).
    :param account_sid: the account; else the one in ``recording_uri``, else the connection's login.
    :param telnyx_conn_id: the Telnyx connection.
    :return: ``{"recording_sid", "call_sid", "path", "size", "sha256", "content_type", "duration"}``.
    """

    template_fields: Sequence[str] = ("recording_sid", "recording_uri", "dst", "dest_conn_id", "account_sid")
    operator_extra_links = (TelnyxRecordingLink(),)
    ui_color = "#00c08b"

    def __init__(
        self,
        *,
        recording_sid: str | None = None,
        recording_uri: str | None = None,
        dst: str | os.PathLike[str] | ObjectStoragePath,
        dest_conn_id: str | None = None,
        overwrite: bool = False,
        delete_after_upload: bool = False,
        account_sid: str | None = None,
        telnyx_conn_id: str = "telnyx_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.recording_sid = recording_sid
        self.recording_uri = recording_uri
        self.dst = dst
        self.dest_conn_id = dest_conn_id
        self.overwrite = require_bool("overwrite", overwrite)
        self.delete_after_upload = require_bool("delete_after_upload", delete_after_upload)
        self.account_sid = account_sid
        self.telnyx_conn_id = telnyx_conn_id
        self._stored: dict[str, Any] | None = None
        resolve_recording(recording_sid, recording_uri, account_sid, rendered=False)
        self._check_destination(rendered=False)

    @cached_property
    def hook(self) -> RecordingHook:
        """The hook, built on first use (never at DAG-parse time)."""
        from telnyx_provider.hooks.recording import RecordingHook

        return RecordingHook(telnyx_conn_id=self.telnyx_conn_id)

    def _check_destination(self, *, rendered: bool) -> None:
        dst, conn = self.dst, self.dest_conn_id
        unresolved = not rendered and is_unresolved(dst)
        if isinstance(dst, str) and not unresolved and (not dst.strip() or dst != dst.strip()):
            raise TelnyxValidationError("dst", dst, "a URL (file://, s3://, gs://...) or a local path")
        if dst is None:
            raise TelnyxValidationError("dst", dst, "an ObjectStoragePath, a URL or a local path")
        if conn is not None and (rendered or not is_unresolved(conn)):
            require_identifier("dest_conn_id", conn)

    def execute(self, context: Context) -> dict[str, Any]:
        """Store the audio, then (optionally) delete the recording once the copy checks out."""
        recording_sid, account_sid = resolve_recording(
            self.recording_sid, self.recording_uri, self.account_sid, rendered=True
        )
        self._check_destination(rendered=True)
        ti = context.get("ti")
        if ti is not None:  # for the link, even if storing fails
            ti.xcom_push(key="recording_sid", value=recording_sid)
        stored = self.hook.download_recording(
            recording_sid,
            self.dst,
            account_sid=account_sid,
            dest_conn_id=self.dest_conn_id,
            overwrite=self.overwrite,
        )
        self._stored = stored
        if self.delete_after_upload:
            self._verify(stored)
            self.hook.delete_recording(recording_sid, account_sid=account_sid)
            self.log.info("Deleted recording %s from Telnyx: its stored copy checks out.", recording_sid)
        self._add_asset_events(context, stored)
        return stored

    def _verify(self, stored: dict[str, Any]) -> None:
        """Read the stored object back; its size and SHA-256 must match what was downloaded."""
        from airflow.sdk import ObjectStoragePath

        from telnyx_provider.hooks.media import read_back, storage_conn_id

        conn_id = storage_conn_id(self.dst) if isinstance(self.dst, ObjectStoragePath) else self.dest_conn_id
        size, sha256 = read_back(stored["path"], conn_id)
        if (size, sha256) != (stored["size"], stored["sha256"]):
            raise RecordingStorageError(
                f"The copy of recording {stored['recording_sid']} at {stored['path']} does not match what "
                f"was downloaded ({size} bytes, sha256 {sha256}; expected {stored['size']} bytes, sha256 "
                f"{stored['sha256']}): the recording was NOT deleted from Telnyx."
            )
        self.log.info("Read back %s: %d bytes, sha256 matches.", stored["path"], size)

    def _add_asset_events(self, context: Context, stored: dict[str, Any]) -> None:
        from airflow.sdk import Asset, AssetAlias

        events = context.get("outlet_events")
        if events is None:
            return
        for outlet in self.outlets or ():
            if isinstance(outlet, Asset):
                events[outlet].extra.update(stored)
            elif isinstance(outlet, AssetAlias):
                events[outlet].add(Asset(uri=stored["path"]), extra=dict(stored))

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: the stored object (named as OpenLineage names file/s3/gs objects, with its size) as
        the output, and the recording SID as a run facet. Called only by the OpenLineage provider."""
        if self._stored is None:
            return None
        from telnyx_provider.lineage import recording_lineage

        return recording_lineage(self._stored)


# Re-exported: the archive's public path is telnyx_provider.transfers.recording (issue 18).
from telnyx_provider.transfers.archive import RecordingsArchiveOperator  # noqa: E402
from telnyx_provider.transfers.retention import RecordingsRetentionOperator  # noqa: E402

__all__ = ["RecordingToStorageOperator", "RecordingsArchiveOperator", "RecordingsRetentionOperator"]
