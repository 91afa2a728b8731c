"""The archive in a harsh world, against the sandbox over real HTTP: nothing lost, nothing stored twice.

429s, 5xx, connections reset before and after the request was carried out, transfers cut midway, media links
refused as expired, pages capped small; an outage in the middle of the interval; a worker killed (a real
process, ``os._exit``) in the middle of the interval, then its retry. Stores copy what they store and count
every object moved into place (``CountingMemoryFileSystem``), so "stored once" is counted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from telnyx_provider.errors import RecordingStorageError
from telnyx_provider.sandbox import Sandbox
from telnyx_provider.transfers.archive_progress import KEY_PREFIX
from tests.transfers.archive_world import (
    MEDIA_CAP,
    CountingMemoryFileSystem,
    DictStore,
    archive_operator,
    attached,
    day,
    finals_of,
    listed,
    media_gets,
    truth_sha256,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def world(monkeypatch):
    """``make(**Sandbox kwargs)``: a sandbox with two past days of 20 recordings, ``telnyx_default`` on it."""
    started: list[Sandbox] = []

    def make(**kwargs) -> Sandbox:
        kwargs.setdefault("processing_delay", 0.1)
        sandbox = Sandbox(port=0, media_seconds_cap=MEDIA_CAP, **kwargs).start()
        started.append(sandbox)
        monkeypatch.setenv("AIRFLOW_CONN_TELNYX_DEFAULT", sandbox.airflow_conn_json())
        sandbox.seed_history(2, per_day=20, absent_rate=0.1, not_final=2, seed=kwargs.get("seed"))
        return sandbox

    yield make
    for sandbox in started:
        sandbox.stop()


def read_manifest(url: str, conn_id: str | None = None) -> dict:
    from airflow.sdk import ObjectStoragePath

    return json.loads(ObjectStoragePath(url, conn_id=conn_id).read_bytes())


def test_faults_everywhere_lose_nothing_and_store_nothing_twice(world):
    """Every fault at once, with the task's retries (as Airflow gives them): a copy whose link is refused
    twice in a row (two expired links) fails its try; the next try copies it, and nothing else again."""
    sandbox = world(
        fault_rate=0.3,
        faults=("429", "500", "503", "reset", "reset_before", "reset_after"),
        retry_after=0,
        media_cut_rate=0.3,
        max_page_size=3,  # seven pages for the day, each may fail
        seed=11,
    )
    sandbox.set_faults(0.0)
    expected = finals_of(sandbox, 2)
    truth = {sid: truth_sha256(sandbox, sid) for sid in expected}
    before = listed(sandbox)
    sandbox.set_faults(0.3)
    sandbox.inject_media("403", count=3)  # expired links: a fresh one is fetched (twice in a row fails)
    sandbox.inject_media("404", count=1)
    conn_id, bucket = attached(CountingMemoryFileSystem())

    failures: list[str] = []
    result = None
    while result is None and len(failures) < 4:
        op = archive_operator(
            dst=f"s3://{bucket}/archive",
            dest_conn_id=conn_id,
            delete_after_archive=True,
            max_retries=12,
            **day(2),
        )
        try:
            result = op.execute({})
        except RecordingStorageError as error:  # the task fails this try; Airflow retries it
            failures.append(str(error))
    assert result is not None, failures
    assert all("a retry copies the rest" in failure for failure in failures)

    stats = sandbox.stats()
    assert sum(stats["faults_injected"].values()) >= 10
    assert stats["media_faults_injected"]["cut"] >= 1
    assert (stats["media_faults_injected"]["403"], stats["media_faults_injected"]["404"]) == (3, 1)
    manifest = read_manifest(result["manifest"], conn_id)
    entries = {entry["recording_sid"]: entry for entry in manifest["recordings"]}
    assert set(entries) == set(expected)  # nothing lost
    for sid, entry in entries.items():
        assert entry["sha256"] == truth[sid]
        assert entry["deletion"] == "deleted"
    audio = {path: count for path, count in CountingMemoryFileSystem.moved.items() if path.startswith(bucket)}
    audio = {path: count for path, count in audio.items() if "/_manifests/" not in path}
    assert audio == {entry["path"].removeprefix("s3://"): 1 for entry in entries.values()}  # each stored once
    sandbox.set_faults(0.0)
    assert set(before) - set(listed(sandbox)) == set(expected)  # deleted: exactly the archived ones


def test_an_outage_mid_interval_keeps_what_is_stored_and_a_rerun_finishes_it(world):
    sandbox = world(seed=12)
    both_days = {"date_from": day(2)["date_from"], "date_to": day(1)["date_to"]}  # ~36 recordings
    expected = {**finals_of(sandbox, 2), **finals_of(sandbox, 1)}
    conn_id, bucket = attached(CountingMemoryFileSystem())

    def outage_after_some_copies() -> None:
        deadline = time.monotonic() + 60
        while media_gets(sandbox) < 6 and time.monotonic() < deadline:
            time.sleep(0.002)
        sandbox.set_faults(1.0, ["503"])  # longer than any copy's retry budget

    threading.Thread(target=outage_after_some_copies, daemon=True).start()
    op = archive_operator(
        dst=f"s3://{bucket}/archive", dest_conn_id=conn_id, max_retries=3, retry_budget=0.5, **both_days
    )
    with pytest.raises(RecordingStorageError, match="could not be copied") as failed:
        op.execute({})

    manifest_url = (
        f"s3://{bucket}/archive/_manifests/" + str(failed.value).split("_manifests/")[1].split(";")[0]
    )
    partial = read_manifest(manifest_url, conn_id)
    done = {entry["recording_sid"] for entry in partial["recordings"]}
    assert 6 <= len(done) < len(expected)
    assert media_gets(sandbox) == len(done)  # every media GET became a stored copy on record
    # The outage stopped new copies: as many failures in a row as workers (and those in flight with them),
    # and the rest were never tried, so an outage does not cost every recording its whole retry budget.
    failed_count = int(str(failed.value).split(" recording(s)")[0])
    assert failed_count >= 4  # as many in a row as workers
    tried = set(sandbox.stats()["gets_per_recording"])
    assert len(tried) == len(done) + failed_count
    assert len(tried) < len(expected)  # the rest were never tried

    sandbox.set_faults(0.0)
    rerun = archive_operator(dst=f"s3://{bucket}/archive", dest_conn_id=conn_id, **both_days).execute({})

    assert (rerun["downloaded"], rerun["already_stored"]) == (len(expected) - len(done), len(done))
    assert media_gets(sandbox) == len(expected)  # nothing downloaded twice
    final = read_manifest(rerun["manifest"], conn_id)
    assert {entry["recording_sid"] for entry in final["recordings"]} == set(expected)
    for entry in final["recordings"]:
        assert CountingMemoryFileSystem.moved[entry["path"].removeprefix("s3://")] == 1


def test_a_worker_killed_mid_interval_is_finished_by_its_retry_with_the_same_manifest(world, tmp_path):
    """A real process dies (``os._exit``) right after its 5th progress write; the retry resumes from the
    task state store (played by a JSON file across the processes)."""
    sandbox = world(seed=13)
    expected = finals_of(sandbox, 2)
    store_file, dst = tmp_path / "task_state_store.json", tmp_path / "archive"
    bounds = {name: value.isoformat() for name, value in day(2).items()}
    script = textwrap.dedent(
        f"""
        import json, os, sys
        sys.path.insert(0, {str(REPO / "provider")!r})
        from telnyx_provider.transfers.recording import RecordingsArchiveOperator

        class FileStore:
            writes = 0
            def get(self, key, default=None):
                try:
                    return json.load(open({str(store_file)!r})).get(key, default)
                except FileNotFoundError:
                    return default
            def set(self, key, value, *, retention=None):
                try:
                    values = json.load(open({str(store_file)!r}))
                except FileNotFoundError:
                    values = {{}}
                values[key] = value
                json.dump(values, open({str(store_file)!r}, "w"))
                FileStore.writes += 1
                if FileStore.writes == 5:
                    os._exit(137)  # the worker dies with copies in flight and no manifest written

        op = RecordingsArchiveOperator(task_id="archive", dst={str(dst)!r}, max_active_downloads=3,
                                       date_from={bounds["date_from"]!r}, date_to={bounds["date_to"]!r})
        op.execute({{"task_state_store": FileStore()}})
        """
    )
    died = subprocess.run(
        [sys.executable, "-c", script], env=dict(os.environ), capture_output=True, text=True, timeout=300
    )
    assert died.returncode == 137, died.stderr[-3000:]
    assert not (dst / "_manifests").exists()  # it died before writing one
    saved = json.loads(store_file.read_text())
    recorded = {row[0] for key, chunk in saved.items() if key.startswith(KEY_PREFIX) for row in chunk}
    assert len(recorded) == 5
    copies_before = media_gets(sandbox)

    retry = archive_operator(dst=str(dst), **day(2)).execute({"task_state_store": DictStore(saved)})

    downloaded_by_retry = media_gets(sandbox) - copies_before
    assert downloaded_by_retry == len(expected) - len(recorded)  # nothing on record downloaded again
    assert retry["already_stored"] == len(recorded)
    written = Path(retry["manifest"].removeprefix("file://")).read_bytes()
    manifest = json.loads(written)
    assert {entry["recording_sid"] for entry in manifest["recordings"]} == set(expected)
    for entry in manifest["recordings"]:
        assert entry["sha256"] == truth_sha256(sandbox, entry["recording_sid"])
    objects = sorted(path for path in dst.rglob("*.wav"))
    assert len(objects) == len(expected)  # one object per recording (a killed copy may leave a .part)
    assert all(".part" not in entry["path"] for entry in manifest["recordings"])

    again = archive_operator(dst=str(dst), **day(2)).execute({})  # a later re-run, no state store
    assert Path(again["manifest"].removeprefix("file://")).read_bytes() == written  # the same manifest
    assert media_gets(sandbox) == copies_before + downloaded_by_retry
