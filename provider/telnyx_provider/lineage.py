"""OpenLineage for the storage operators: the stored object as the output, the recording SID as a run facet;
for the archive, the destination prefix and the manifest as outputs, the interval as a run facet.

Optional: it needs the OpenLineage provider (``apache-airflow-providers-openlineage``), which calls the
operator's ``get_openlineage_facets_on_complete``; without it nothing here is imported. Facets come from
the common-compat provider. No phone number is ever put in lineage: only the recording SID, the object's
name and size.
"""

from __future__ import annotations

from functools import cache
from typing import Any
from urllib.parse import urlsplit

#: Our run facet's name in the OpenLineage event.
RUN_FACET_NAME = "telnyx_recording"
_BUCKET_SCHEMES = {"s3": "s3", "s3a": "s3", "gs": "gs", "gcs": "gs"}


def dataset_name(path_url: str) -> tuple[str, str]:
    """``(namespace, name)`` of a stored object, as OpenLineage names it.

    ``file:///a/b.wav`` -> ``("file", "/a/b.wav")``; ``s3://bucket/k.wav`` -> ``("s3://bucket", "k.wav")``;
    ``gs://``/``gcs://`` -> ``("gs://bucket", key)``; any other ``scheme://host/path`` ->
    ``("scheme://host", "/path")``.
    """
    parts = urlsplit(path_url)
    scheme = parts.scheme.lower()
    if scheme in ("", "file", "local"):
        return "file", parts.path
    host = parts.hostname or ""
    if scheme in _BUCKET_SCHEMES:
        return f"{_BUCKET_SCHEMES[scheme]}://{host}", parts.path.lstrip("/")
    return f"{scheme}://{parts.netloc.rpartition('@')[2]}", parts.path


@cache
def _run_facet_class() -> type:
    import attrs
    from airflow.providers.common.compat.openlineage.facet import RunFacet

    @attrs.define
    class TelnyxRecordingRunFacet(RunFacet):  # type: ignore[misc,unused-ignore]
        """The Telnyx recording a run stored (its SID and duration; never a phone number)."""

        recording_sid: str = attrs.field(default="")
        duration: int | None = attrs.field(default=None)

    return TelnyxRecordingRunFacet


def recording_lineage(stored: dict[str, Any]) -> Any:
    """The ``OperatorLineage`` of one stored recording (the hook's result dict)."""
    from airflow.providers.common.compat.openlineage.facet import (
        OutputDataset,
        OutputStatisticsOutputDatasetFacet,
    )
    from airflow.providers.openlineage.extractors import OperatorLineage

    namespace, name = dataset_name(stored["path"])
    statistics = OutputStatisticsOutputDatasetFacet(size=stored["size"], fileCount=1)
    output = OutputDataset(namespace=namespace, name=name, outputFacets={"outputStatistics": statistics})
    facet = _run_facet_class()(recording_sid=stored["recording_sid"], duration=stored.get("duration"))
    return OperatorLineage(outputs=[output], run_facets={RUN_FACET_NAME: facet})


#: The archive operator's run facet.
ARCHIVE_RUN_FACET_NAME = "telnyx_recordings_archive"


@cache
def _archive_facet_class() -> type:
    import attrs
    from airflow.providers.common.compat.openlineage.facet import RunFacet

    @attrs.define
    class TelnyxRecordingsArchiveRunFacet(RunFacet):  # type: ignore[misc,unused-ignore]
        """The interval an archive run covered and what it holds (counts only; never a phone number)."""

        account_sid: str = attrs.field(default="")
        date_from: str = attrs.field(default="")
        date_to: str = attrs.field(default="")
        recordings: int = attrs.field(default=0)
        downloaded: int = attrs.field(default=0)
        not_final: int = attrs.field(default=0)
        deleted: int = attrs.field(default=0)

    return TelnyxRecordingsArchiveRunFacet


def archive_lineage(summary: dict[str, Any]) -> Any:
    """The ``OperatorLineage`` of an archive run (the operator's result dict): two outputs, the destination
    prefix (with the bytes and objects this run wrote) and the interval's manifest, and a run facet."""
    from airflow.providers.common.compat.openlineage.facet import (
        OutputDataset,
        OutputStatisticsOutputDatasetFacet,
    )
    from airflow.providers.openlineage.extractors import OperatorLineage

    namespace, name = dataset_name(summary["destination"])
    written = OutputStatisticsOutputDatasetFacet(
        rowCount=summary["downloaded"], size=summary["downloaded_bytes"], fileCount=summary["downloaded"]
    )
    prefix = OutputDataset(namespace=namespace, name=name, outputFacets={"outputStatistics": written})
    manifest_namespace, manifest_name = dataset_name(summary["manifest"])
    manifest = OutputDataset(namespace=manifest_namespace, name=manifest_name)
    facet = _archive_facet_class()(
        account_sid=summary["account_sid"],
        date_from=summary["date_from"],
        date_to=summary["date_to"],
        recordings=summary["recordings"],
        downloaded=summary["downloaded"],
        not_final=summary["not_final"],
        deleted=summary["deleted"],
    )
    return OperatorLineage(outputs=[prefix, manifest], run_facets={ARCHIVE_RUN_FACET_NAME: facet})
