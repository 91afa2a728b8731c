"""An adversarial review of the archive and retention operators (issue 18): the world attacks each guarantee.

Each test reproduces one way the real world could break "compliance-grade copies" or "nothing lost, nothing
twice" (a store that truncates, two runs of one interval at once, a manifest that lies, retries that
multiply...), against the sandbox over real HTTP and stores that copy what they store; or shows a guarantee
that held when attacked.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from telnyx_provider.errors import RecordingStorageError, TelnyxApiError
from telnyx_provider.transfers.recording import RecordingsRetentionOperator
from tests.transfers.adversarial_stores import TruncatingFileSystem
from tests.transfers.archive_world import archive_operator, attached, day, finals_of, route


def stored(url: str) -> Path:
    assert url.startswith("file://")
    return Path(url.removeprefix("file://"))


def manifest_of(url: str, conn_id: str | None = None) -> dict:
    from airflow.sdk import ObjectStoragePath

    return json.loads(ObjectStoragePath(url, conn_id=conn_id).read_bytes())


def retention(**kwargs) -> RecordingsRetentionOperator:
    kwargs.setdefault("task_id", "retention")
    kwargs.setdefault("keep_for", "PT1H")
    return RecordingsRetentionOperator(**kwargs)


# -- retries ------------------------------------------------------------------------------------------------


def test_a_copy_that_keeps_failing_costs_one_retry_policy_not_two_nested(history, tmp_path):
    """The download's retry loop wrapped the fetch's own: max_retries=3 made 16 fetches of a recording whose
    fetch kept failing, not 4 (and 16 times the backoff)."""
    from telnyx_provider.hooks.recording import RecordingHook

    sid = sorted(finals_of(history, 2))[0]
    hook = RecordingHook(max_retries=3, retry_max_wait=0.01, retry_budget=60)
    history.inject("GET /Recordings/{sid}", "500", count=100)
    before = route(history, "GET /Recordings/{sid}")

    with pytest.raises(TelnyxApiError, match="500"):
        hook.download_recording(sid, f"{tmp_path}/")

    assert route(history, "GET /Recordings/{sid}") - before == 4  # the first try and 3 retries
    assert not list(tmp_path.iterdir())


# -- compliance-grade copies ------------------------------------------------------------------------------


def test_a_store_that_silently_truncates_gets_nothing_recorded_as_archived(history):
    """The stream was whole and hashed, but the store kept less: the manifest named each copy archived with
    the stream's size and SHA-256 (and the task succeeded), though no stored object matched it."""
    conn_id, bucket = attached(TruncatingFileSystem())
    expected = finals_of(history, 2)
    op = archive_operator(dst=f"s3://{bucket}/calls", dest_conn_id=conn_id, max_active_downloads=2, **day(2))

    with pytest.raises(RecordingStorageError, match="could not be copied") as failed:
        op.execute({})

    message = str(failed.value)
    assert "read back" in message
    manifest = manifest_of(
        f"s3://{bucket}/calls/_manifests/" + message.split("_manifests/")[1].split(";")[0], conn_id
    )
    assert manifest["recordings"] == []  # nothing on record that the store does not hold
    assert expected  # there was something to copy
