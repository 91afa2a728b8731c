"""An adversarial review of the archive and retention operators (issue 18): the world attacks each guarantee.

Each test reproduces one way the real world could break "compliance-grade copies" or "nothing lost, nothing
twice" (a store that truncates, two runs of one interval at once, a manifest that lies, retries that
multiply...), against the sandbox over real HTTP and stores that copy what they store; or shows a guarantee
that held when attacked.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import pytest

from telnyx_provider.errors import RecordingStorageError, TelnyxApiError
from telnyx_provider.transfers.recording import RecordingsRetentionOperator
from tests.transfers.adversarial_stores import GatedFileSystem, TruncatingFileSystem
from tests.transfers.archive_world import (
    CountingMemoryFileSystem,
    archive_operator,
    attached,
    day,
    finals_of,
    route,
    truth_sha256,
)


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


def test_two_runs_of_one_interval_at_once_lose_no_entry_and_no_deletion(history):
    """A manual re-run (B) lists the interval and is held before its first copy lands; meanwhile the
    scheduled run (A) archives the interval and deletes it from Telnyx. B's later copies find the recordings
    gone (404) and B wrote its manifest last: the archived entries of everything A deleted were lost (named
    "deleted, no audio"), though their copies were in the store."""
    plain, bucket = attached(CountingMemoryFileSystem())
    gated, _ = attached(GatedFileSystem())  # the same objects; B's first write waits for the gate
    GatedFileSystem.gate.clear()
    GatedFileSystem.held.clear()
    expected = finals_of(history, 2)
    truth = {sid: truth_sha256(history, sid) for sid in expected}
    dst = f"s3://{bucket}/calls"
    outcome: dict[str, object] = {}

    def run_b() -> None:
        try:
            op = archive_operator(dst=dst, dest_conn_id=gated, max_active_downloads=1, **day(2))
            outcome["b"] = op.execute({})
        except BaseException as error:
            outcome["b"] = error

    b = threading.Thread(target=run_b, name="run-b")
    b.start()
    try:
        assert GatedFileSystem.held.wait(60), "B never reached its first copy"
        a = archive_operator(dst=dst, dest_conn_id=plain, delete_after_archive=True, **day(2)).execute({})
    finally:
        GatedFileSystem.gate.set()
        b.join(120)
    assert a["deleted"] == len(expected)
    assert isinstance(outcome["b"], dict), outcome["b"]  # recordings gone mid-run are not failures
    assert outcome["b"]["recordings"] == len(expected)

    manifest = manifest_of(a["manifest"], plain)
    entries = {entry["recording_sid"]: entry for entry in manifest["recordings"]}
    assert set(entries) == set(expected)  # every copy still on record
    assert {entry["deletion"] for entry in entries.values()} == {"deleted"}  # and A's deletions too
    assert not set(expected) & {item["recording_sid"] for item in manifest["no_audio"]}
    for sid, entry in entries.items():
        from airflow.sdk import ObjectStoragePath

        copy = ObjectStoragePath(entry["path"], conn_id=plain).read_bytes()
        assert hashlib.sha256(copy).hexdigest() == entry["sha256"] == truth[sid]
