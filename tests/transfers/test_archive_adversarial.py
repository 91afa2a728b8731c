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
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from telnyx_provider.errors import RecordingStorageError, TelnyxApiError
from telnyx_provider.transfers.recording import RecordingsRetentionOperator
from tests.transfers.adversarial_stores import (
    GatedFileSystem,
    ManifestReadCountingFileSystem,
    ManifestWriteFailingFileSystem,
    TruncatingFileSystem,
)
from tests.transfers.archive_world import (
    CountingMemoryFileSystem,
    archive_operator,
    attached,
    day,
    finals_of,
    listed,
    midnight,
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


# -- retention against copies and manifests that lie ---------------------------------------------------------


def archive_days(tmp_path: Path, *days_ago: int) -> dict[str, dict]:
    """Archive those days to a local folder; every manifest entry by SID."""
    entries: dict[str, dict] = {}
    for days in days_ago:
        result = archive_operator(dst=str(tmp_path), **day(days)).execute({})
        manifest = json.loads(stored(result["manifest"]).read_text())
        entries.update({entry["recording_sid"]: entry for entry in manifest["recordings"]})
    return entries


def test_retention_never_deletes_a_recording_whose_copy_now_holds_other_bytes_of_the_same_size(
    history, tmp_path
):
    """By default retention checked the copy's size only: a copy whose bytes changed without changing its
    length (bit rot, a partial overwrite, another recording's audio of the same length) had Telnyx's only
    good copy deleted."""
    archived = archive_days(tmp_path, 3)
    victim = sorted(archived)[0]
    rotten = bytearray(stored(archived[victim]["path"]).read_bytes())
    rotten[len(rotten) // 2] ^= 0xFF
    stored(archived[victim]["path"]).write_bytes(bytes(rotten))

    result = retention(dst=str(tmp_path)).execute({})

    assert victim in listed(history)  # kept on Telnyx
    assert victim in result["refused_sids"]
    assert result["deleted"] == len(archived) - 1  # the others' copies check out


def test_retention_refuses_manifest_entries_pointing_at_another_recordings_copy_or_outside_the_archive(
    history, tmp_path
):
    """A manifest edited by hand (or copied from elsewhere): an entry naming another recording's object, with
    that object's size and SHA-256; an entry naming a good copy that lies outside the archive's prefix. Both
    checked out, and both recordings were deleted."""
    archive = tmp_path / "archive"
    archived = archive_days(archive, 3)
    borrower, lender, outsider = sorted(archived)[:3]
    manifest_path = next((archive / "_manifests").glob("*.json"))
    manifest = json.loads(manifest_path.read_text())
    elsewhere = tmp_path / "elsewhere" / f"{outsider}.wav"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(stored(archived[outsider]["path"]).read_bytes())
    for entry in manifest["recordings"]:
        if entry["recording_sid"] == borrower:
            entry.update({key: archived[lender][key] for key in ("path", "size", "sha256")})
            stored(archived[borrower]["path"]).unlink()
        if entry["recording_sid"] == outsider:
            entry["path"] = f"file://{elsewhere}"
            stored(archived[outsider]["path"]).unlink()
    manifest_path.write_text(json.dumps(manifest))

    result = retention(dst=str(archive), verify_sha256=True).execute({})

    remaining = listed(history)
    assert borrower in remaining
    assert outsider in remaining
    assert {borrower, outsider} <= set(result["refused_sids"])
    assert lender not in remaining
    assert result["deleted"] == len(archived) - 2


def test_retention_trusts_an_entry_only_in_the_manifest_of_the_recordings_own_interval(history, tmp_path):
    """An entry moved into the manifest of another day (a merge gone wrong, a manifest edited by hand) is
    not proof: the manifest of that day does not describe that recording."""
    archived = archive_days(tmp_path, 3, 2)
    manifests = {path.name: path for path in (tmp_path / "_manifests").glob("*.json")}
    older, newer = (json.loads(manifests[name].read_text()) for name in sorted(manifests))
    moved = older["recordings"].pop()
    newer["recordings"].append(moved)
    for name, content in zip(sorted(manifests), (older, newer), strict=True):
        manifests[name].write_text(json.dumps(content))

    result = retention(dst=str(tmp_path), verify_sha256=True).execute({})

    assert moved["recording_sid"] in listed(history)
    assert moved["recording_sid"] in result["refused_sids"]
    assert result["deleted"] == len(archived) - 1


def test_retention_reads_only_the_manifests_of_intervals_that_hold_old_recordings(history):
    """Retention read every manifest under the prefix at every run (years of daily manifests, each up to
    megabytes), and held every entry of every one in memory, to delete one day's recordings."""
    counting, bucket = attached(ManifestReadCountingFileSystem())
    dst = f"s3://{bucket}/calls"
    manifests = [
        archive_operator(dst=dst, dest_conn_id=counting, **day(days)).execute({})["manifest"]
        for days in (3, 2, 1)
    ]
    day_3 = manifests[0].rsplit("/", 1)[1]
    keep_for = (datetime.now(timezone.utc) - midnight(2)).total_seconds() + 1  # only day 3 is older
    ManifestReadCountingFileSystem.reads.clear()

    first = retention(dst=dst, dest_conn_id=counting, keep_for=keep_for).execute({})

    assert first["deleted"] > 0
    read_first = dict(ManifestReadCountingFileSystem.reads)
    ManifestReadCountingFileSystem.reads.clear()
    second = retention(dst=dst, dest_conn_id=counting, keep_for=keep_for).execute({})
    assert second["deleted"] == 0
    assert set(read_first) == {day_3}  # read, and read again to merge each time it is rewritten
    assert sum(ManifestReadCountingFileSystem.reads.values()) == 0  # nothing old left: nothing to read


def test_retention_deletes_nothing_its_manifest_cannot_record(history):
    """Retention deleted first and wrote the manifests after: when that write failed (or the worker died
    there), recordings were gone from Telnyx while their manifest still said ``"deletion": null``, and no
    later run (they are no longer listed) could ever set it right."""
    flaky, bucket = attached(ManifestWriteFailingFileSystem())
    dst = f"s3://{bucket}/calls"
    ManifestWriteFailingFileSystem.failing.clear()
    first = archive_operator(dst=dst, dest_conn_id=flaky, **day(3)).execute({})
    before = listed(history)
    ManifestWriteFailingFileSystem.failing.set()
    try:
        with pytest.raises(PermissionError):
            retention(dst=dst, dest_conn_id=flaky).execute({})
    finally:
        ManifestWriteFailingFileSystem.failing.clear()

    assert listed(history).keys() == before.keys()  # nothing deleted that is not on record
    assert route(history, "DELETE /Recordings/{sid}") == 0

    done = retention(dst=dst, dest_conn_id=flaky).execute({})  # the store works again
    manifest = manifest_of(first["manifest"], flaky)
    assert done["deleted"] == first["recordings"] > 0
    assert {entry["deletion"] for entry in manifest["recordings"]} == {"deleted"}


def test_the_archive_trusts_no_manifest_entry_pointing_at_another_recordings_copy(history, tmp_path):
    """A re-run (here with ``delete_after_archive``) took an edited entry for proof when the object it names
    (another recording's copy) had the entry's size and SHA-256: its recording was never copied."""
    first = archive_operator(dst=str(tmp_path), **day(3)).execute({})
    manifest_path = stored(first["manifest"])
    manifest = json.loads(manifest_path.read_text())
    borrower, lender = manifest["recordings"][:2]
    stored(borrower["path"]).unlink()
    own_path = borrower["path"]
    borrower.update({key: lender[key] for key in ("path", "size", "sha256")})
    manifest_path.write_text(json.dumps(manifest))

    rerun = archive_operator(dst=str(tmp_path), delete_after_archive=True, **day(3)).execute({})

    assert rerun["downloaded"] == 1  # the borrower, copied again to its own path
    entries = {entry["recording_sid"]: entry for entry in json.loads(manifest_path.read_text())["recordings"]}
    assert entries[borrower["recording_sid"]]["path"] == own_path
    assert stored(own_path).exists()
    assert {entry["deletion"] for entry in entries.values()} == {"deleted"}


# -- nothing lost, nothing twice: boundaries, clocks, late listings ------------------------------------------


@pytest.mark.parametrize("date_format", ["rfc2822", "iso8601"])
def test_a_recording_created_exactly_at_a_bound_is_archived_by_exactly_one_of_two_adjacent_intervals(
    monkeypatch, tmp_path, date_format
):
    """Held: [date_from, date_to) is half-open in both of Telnyx's date formats, whatever offset the bounds
    are written with, and in the service's clock (skewed here by 37 s)."""
    from telnyx_provider.sandbox import Sandbox
    from tests.transfers.archive_world import MEDIA_CAP, created

    with Sandbox(
        port=0, processing_delay=0.1, media_seconds_cap=MEDIA_CAP, date_format=date_format, clock_skew=37
    ) as sandbox:
        monkeypatch.setenv("AIRFLOW_CONN_TELNYX_DEFAULT", sandbox.airflow_conn_json())
        sandbox.seed_history(2, per_day=6, absent_rate=0.0, not_final=0, seed=5)
        finals = finals_of(sandbox, 2)
        sid, item = sorted(finals.items())[0]
        moment = created(item)  # as the service reports it: our clock + 37 s
        india = timezone(timedelta(hours=5, minutes=30))
        before = {"date_from": moment - timedelta(hours=1), "date_to": moment.astimezone(india).isoformat()}
        after = {"date_from": moment.astimezone(india).isoformat(), "date_to": moment + timedelta(hours=1)}

        ending = archive_operator(dst=str(tmp_path / "a"), **before).execute({})
        starting = archive_operator(dst=str(tmp_path / "b"), **after).execute({})

    def sids(result: dict) -> set[str]:
        return {
            entry["recording_sid"]
            for entry in json.loads(stored(result["manifest"]).read_text())["recordings"]
        }

    assert sid not in sids(ending)  # the end is excluded
    assert sid in sids(starting)  # the start is included
    assert not sids(ending) & sids(starting)


def test_a_recording_in_the_second_of_a_sub_second_bound_is_archived_by_one_of_the_two_intervals(
    history, tmp_path
):
    """Telnyx reports creation to the second. With a bound inside a second (a timedelta schedule whose start
    date had a fraction, bounds given by hand), the hook dropped a recording of that second from the earlier
    interval (its bound check used the bound cut to the second) and the later one excluded it as created
    before its start: it was in neither manifest."""
    from tests.transfers.archive_world import created

    sid, item = sorted(finals_of(history, 2).items())[0]
    split = created(item) + timedelta(milliseconds=500)
    earlier = archive_operator(
        dst=str(tmp_path / "a"), date_from=split - timedelta(hours=1), date_to=split
    ).execute({})
    later = archive_operator(
        dst=str(tmp_path / "b"), date_from=split, date_to=split + timedelta(hours=1)
    ).execute({})

    def sids(result: dict) -> set[str]:
        return {
            entry["recording_sid"]
            for entry in json.loads(stored(result["manifest"]).read_text())["recordings"]
        }

    assert sid in sids(earlier) | sids(later)  # not lost
    assert not sids(earlier) & sids(later)  # nor archived twice
    assert sid in sids(earlier)  # reported at that second, before the bound


def test_cut_media_bodies_without_a_length_are_never_archived_nor_deleted(history):
    """Held (after the length proof merged from main): media sent HTTP/1.0 style (no Content-Length, no
    chunks: the body ends when the connection closes) and cut halfway look whole to the transport. A cut WAV
    is caught by its RIFF size and copied again; an MP3 states no length anywhere, so none is archived, and
    with ``delete_after_archive`` nothing unproven is deleted from Telnyx."""
    expected = finals_of(history, 2)
    truth = {sid: truth_sha256(history, sid) for sid in expected}
    history.configure_media(framing="close")
    history.inject_media("cut", count=3)
    conn_id, bucket = attached(CountingMemoryFileSystem())

    wav = archive_operator(
        dst=f"s3://{bucket}/wav", dest_conn_id=conn_id, delete_after_archive=True, **day(2)
    ).execute({})

    entries = {entry["recording_sid"]: entry for entry in manifest_of(wav["manifest"], conn_id)["recordings"]}
    assert history.stats()["media_faults_injected"]["cut"] == 3
    assert {sid: entry["sha256"] for sid, entry in entries.items()} == truth  # every copy whole
    assert wav["deleted"] == len(expected)

    history.configure_media(framing="close", audio_format="mp3")
    mp3_day = finals_of(history, 3)
    with pytest.raises(RecordingStorageError, match="could not be copied") as failed:
        archive_operator(
            dst=f"s3://{bucket}/mp3", dest_conn_id=conn_id, delete_after_archive=True, **day(3)
        ).execute({})
    assert "length" in str(failed.value)
    assert set(mp3_day) <= set(listed(history))  # nothing deleted
    manifest = manifest_of(
        f"s3://{bucket}/mp3/_manifests/" + str(failed.value).split("_manifests/")[1].split(";")[0], conn_id
    )
    assert manifest["recordings"] == []


# -- resources ----------------------------------------------------------------------------------------------


def test_progress_values_stay_under_airflows_state_store_value_limit_whatever_the_paths(tmp_path):
    """Airflow 3.3 stores each task state store value in a Text column (MEDIUMTEXT on MySQL) but
    ``[state_store] max_value_storage_bytes`` (64 kB by default) refuses larger values through the REST API
    and warns on every write from a worker. Chunks of 50 entries went over it once paths grew long (an object
    store key may hold 1,024 bytes): about 70 kB here."""
    from telnyx_provider.archive_manifest import Manifest
    from telnyx_provider.archive_plan import parse_interval
    from telnyx_provider.transfers.archive_progress import ArchiveProgress
    from tests.transfers.archive_world import DictStore

    limit = 65535  # Airflow 3.3's default [state_store] max_value_storage_bytes
    store = DictStore()
    progress = ArchiveProgress(store, "telnyx_archive:test")
    entries = [
        {
            "recording_sid": f"{index:08d}-a32c-4218-b3b5-9cf78941ccac",
            "call_sid": "v3:KBnLO0ZK3DhKM5s7bE9VluaSmKsOchKht_fUYvxcp8ysbmzCCtpkmA",
            "path": "s3://bucket/" + "p" * 1000 + f"/{index:08d}-a32c-4218-b3b5-9cf78941ccac.wav",
            "size": 1_920_044,
            "sha256": "ab" * 32,
            "content_type": "audio/wav",
            "duration": 60,
            "date_created": "2024-01-31T10:00:00+00:00",
            "source": "StartConferenceRecordingAPI",
        }
        for index in range(120)
    ]
    for entry in entries:
        progress.add([entry])

    sizes = [len(json.dumps(value)) for value in store.values.values()]
    assert max(sizes) <= limit, sizes
    interval = parse_interval("2024-01-31", "2024-02-01")
    manifest = Manifest("acc", interval, "s3://bucket/", "{recording_sid}.{ext}")
    assert ArchiveProgress(store, "telnyx_archive:test").recover(manifest) == len(entries)  # all read back


# -- kills and lost replies ----------------------------------------------------------------------------------


def test_a_try_that_died_after_its_manifest_but_before_its_asset_event_is_finished_by_its_retry(history):
    """Held: the worker dies once the manifest is written but before Airflow records the outlet event (it
    is sent when the task ends); the retry downloads nothing, writes the same bytes and emits the event."""
    from airflow.sdk.execution_time.context import OutletEventAccessors

    from telnyx_provider.assets import archive_manifests_asset

    conn_id, bucket = attached(CountingMemoryFileSystem())
    asset = archive_manifests_asset(history.account_sid)
    dst = f"s3://{bucket}/calls"
    died = archive_operator(dst=dst, dest_conn_id=conn_id, outlets=[asset], **day(2)).execute(
        {"outlet_events": OutletEventAccessors()}  # its events are lost with the worker
    )
    written = manifest_of(died["manifest"], conn_id)
    gets = route(history, "GET /Recordings/{sid}")

    events = OutletEventAccessors()
    retried = archive_operator(dst=dst, dest_conn_id=conn_id, outlets=[asset], **day(2)).execute(
        {"outlet_events": events}
    )

    assert manifest_of(retried["manifest"], conn_id) == written
    assert (retried["downloaded"], retried["already_stored"]) == (0, died["recordings"])
    assert route(history, "GET /Recordings/{sid}") == gets  # nothing fetched again
    assert events[asset].extra["manifest"] == died["manifest"]
    assert events[asset].extra["recordings"] == died["recordings"]
    assert all(count == 1 for path, count in CountingMemoryFileSystem.moved.items() if path.endswith(".wav"))


@pytest.mark.parametrize("lost", ["504", "reset_after"])
def test_a_delete_whose_reply_is_lost_is_recorded_as_deleted_by_the_archive_and_by_retention(
    history, tmp_path, lost
):
    """Held: the service deletes, then the reply is lost (a gateway's 504, a reset after the request was
    carried out); the retry's 404 means the first attempt deleted it, and the manifest says so."""
    history.inject("DELETE /Recordings/{sid}", lost, count=1)
    archived = archive_operator(
        dst=str(tmp_path / "a"), delete_after_archive=True, max_active_downloads=1, **day(2)
    ).execute({})
    assert (
        archived["deleted"]
        == archived["recordings"]
        == len(json.loads(stored(archived["manifest"]).read_text())["recordings"])
    )

    first = archive_operator(dst=str(tmp_path / "r"), **day(3)).execute({})
    history.inject("DELETE /Recordings/{sid}", lost, count=1)
    kept = retention(dst=str(tmp_path / "r")).execute({})
    manifest = json.loads(stored(first["manifest"]).read_text())
    assert kept["deleted"] == first["recordings"]
    assert kept["delete_failed"] == 0
    assert {entry["deletion"] for entry in manifest["recordings"]} == {"deleted"}
    assert history.stats()["injections_pending"] == []


def test_a_recording_no_longer_listed_leaves_the_not_final_list_although_manifests_are_merged(
    history, tmp_path
):
    """The merge that keeps another run's entries must not bring back what this run's own listing dropped: a
    recording named not final by the last run, then deleted, stayed "left for a later run" for ever."""
    from telnyx_provider.hooks.recording import RecordingHook

    first = archive_operator(dst=str(tmp_path), **day(1)).execute({})
    waiting = first["not_final_sids"]
    assert len(waiting) == 2
    RecordingHook().delete_recording(waiting[0])  # deleted before it ever ended

    second = archive_operator(dst=str(tmp_path), **day(1)).execute({})

    assert second["not_final_sids"] == waiting[1:]
    manifest = json.loads(stored(second["manifest"]).read_text())
    assert [item["recording_sid"] for item in manifest["not_final"]] == waiting[1:]


def test_a_media_link_refused_twice_is_a_failed_copy_not_a_deleted_recording(history, tmp_path):
    """A media link that answered 404 again after the refresh (an expired link twice, a storage hiccup) was
    taken for the recording being deleted: named "deleted" in no_audio, never copied, and the task succeeded.
    (It made test_faults_everywhere_lose_nothing_and_store_nothing_twice fail now and then.)"""
    expected = finals_of(history, 2)
    history.inject_media("404", count=2)  # the first copy's link, and the fresh one fetched after it
    op = archive_operator(dst=str(tmp_path), max_active_downloads=1, **day(2))

    with pytest.raises(RecordingStorageError, match="could not be copied") as failed:
        op.execute({})

    assert "404" in str(failed.value)
    manifest = json.loads(next((tmp_path / "_manifests").glob("*.json")).read_text())
    assert {item["status"] for item in manifest["no_audio"]} <= {"absent"}  # nothing named deleted
    retried = archive_operator(dst=str(tmp_path), **day(2)).execute({})  # the task's retry
    assert retried["recordings"] == len(expected)
    assert retried["downloaded"] == len(expected) - len(manifest["recordings"])
