"""OpenLineage for the storage operator: the stored object as the output, the recording SID as a run facet.

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
