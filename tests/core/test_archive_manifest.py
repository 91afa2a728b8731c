"""The manifest: the same content gives the same bytes; another account, interval or bad entry is refused."""

from __future__ import annotations

import json

import pytest

from telnyx_provider.archive_manifest import Manifest, ManifestError, archived_entry, brief, check_entry
from telnyx_provider.archive_plan import parse_interval

ACCOUNT = "61bf923e-5e4d-4595-a110-56190ea18a1b"
INTERVAL = parse_interval("2024-01-31T00:00:00Z", "2024-02-01T00:00:00Z")


def entry(sid: str, created: str = "2024-01-31T10:00:00+00:00", size: int = 10) -> dict:
    stored = {
        "recording_sid": sid,
        "call_sid": "v3:call",
        "path": f"s3://bucket/calls/{sid}.wav",
        "size": size,
        "sha256": "ab" * 32,
        "content_type": "audio/wav",
        "duration": 5,
    }
    return archived_entry(stored, {"sid": sid, "date_created": created, "source": "DialVerb"})


def manifest() -> Manifest:
    return Manifest(ACCOUNT, INTERVAL, "s3://bucket/calls/", "{recording_sid}.{ext}")


def test_the_same_recordings_give_the_same_bytes_whatever_the_order_they_came_in():
    first, second = manifest(), manifest()
    entries = [entry("b", "2024-01-31T10:00:00+00:00"), entry("a", "2024-01-31T11:00:00+00:00"), entry("c")]
    for item in entries:
        first.add_archived(item)
    for item in reversed(entries):
        second.add_archived(item)
    assert first.dumps() == second.dumps()
    data = json.loads(first.dumps())
    assert [item["recording_sid"] for item in data["recordings"]] == ["b", "c", "a"]  # created, then SID
    assert data["totals"] == {"recordings": 3, "bytes": 30, "not_final": 0, "no_audio": 0, "deleted": 0}
    assert "written" not in first.dumps().decode()  # no time of writing


def test_a_manifest_reads_back_as_it_was_written():
    written = manifest()
    written.add_archived(entry("a"))
    written.set_deletion("a", "deleted")
    written.set_unarchived(
        [
            {
                "sid": "p",
                "call_sid": "v3:x",
                "status": "paused",
                "date_created": "Wed, 31 Jan 2024 12:00:00 +0000",
            }
        ],
        [{"sid": "s", "call_sid": "v3:y", "status": "absent", "date_created": "2024-01-31T13:00:00Z"}],
    )
    read = Manifest.loads(written.dumps(), account_sid=ACCOUNT, interval=INTERVAL)
    assert read.dumps() == written.dumps()
    assert read.not_final["p"]["date_created"] == "2024-01-31T12:00:00+00:00"
    assert Manifest.loads(written.dumps(), account_sid=ACCOUNT).interval == INTERVAL


def test_a_recording_that_became_final_leaves_the_not_final_list():
    kept = manifest()
    kept.set_unarchived([{"sid": "p", "status": "in-progress"}, {"sid": "q", "status": "paused"}], [])
    kept.add_archived(entry("p"))
    kept.set_unarchived([{"sid": "p", "status": "in-progress"}], [])  # a stale listing cannot undo it
    assert set(kept.not_final) == set()  # q is no longer listed (deleted): dropped
    assert set(kept.archived) == {"p"}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{not json", "not JSON"),
        (json.dumps({"version": 2}).encode(), "version 1"),
        (json.dumps({"version": 1, "account_sid": "other"}).encode(), "account"),
        (
            json.dumps(
                {"version": 1, "account_sid": ACCOUNT, "date_from": "2024-01-30", "date_to": "2024-01-31"}
            ).encode(),
            "not this interval",
        ),
        (
            json.dumps(
                {
                    "version": 1,
                    "account_sid": ACCOUNT,
                    "date_from": "2024-01-31",
                    "date_to": "2024-02-01",
                    "recordings": [{"recording_sid": "a", "path": "x", "size": 1, "sha256": "short"}],
                }
            ).encode(),
            "sha256",
        ),
    ],
)
def test_a_manifest_that_cannot_be_trusted_is_refused(raw, message):
    with pytest.raises(ManifestError, match=message):
        Manifest.loads(raw, account_sid=ACCOUNT, interval=INTERVAL)


@pytest.mark.parametrize(
    "bad",
    [
        {"path": "x", "size": 1, "sha256": "ab" * 32},
        {"recording_sid": "a", "path": "x", "size": True, "sha256": "ab" * 32},
        {"recording_sid": "a", "path": "x", "size": -1, "sha256": "ab" * 32},
        {"recording_sid": "a", "path": "x", "size": 1, "sha256": "AB" * 32},
        {"recording_sid": "a", "path": "x", "size": 1, "sha256": "ab" * 32, "deletion": "maybe"},
        ["a"],
    ],
)
def test_bad_entries_are_refused(bad):
    with pytest.raises(ManifestError):
        check_entry(bad)


def test_brief_names_a_recording_without_its_media_link():
    named = brief(
        {"sid": "a", "call_sid": "v3:c", "status": "paused", "media_url": "https://x", "source": "DialVerb"}
    )
    assert named == {
        "recording_sid": "a",
        "call_sid": "v3:c",
        "status": "paused",
        "date_created": None,
        "source": "DialVerb",
    }


def test_merging_the_stored_manifest_drops_no_entry_and_no_deletion():
    """Two runs of one interval at once (review of issue 18): each writes after merging the other's."""
    ours, theirs = manifest(), manifest()
    ours.add_archived(entry("both"))
    ours.add_archived(entry("ours-only"))
    ours.add_archived(entry("pending-there"))
    theirs.add_archived({**entry("both"), "path": "s3://bucket/calls/elsewhere/both.wav"})
    theirs.set_deletion("both", "deleted")
    theirs.add_archived(entry("theirs-only"))
    theirs.add_archived(entry("pending-there"))
    theirs.set_deletion("pending-there", "pending")
    theirs.add_archived(entry("gone-here"))
    theirs.set_unarchived([{"sid": "slow", "status": "in-progress"}], [{"sid": "silent", "status": "absent"}])
    # This run found "gone-here" deleted (404) after the other archived and deleted it.
    gone = [{"sid": "gone-here", "status": "deleted"}, {"sid": "silent", "status": "absent"}]
    ours.set_unarchived([], gone)

    ours.merge(theirs)

    assert set(ours.archived) == {"both", "ours-only", "theirs-only", "pending-there", "gone-here"}
    assert ours.archived["both"]["path"] == "s3://bucket/calls/both.wav"  # this run's checked copy
    assert ours.archived["both"]["deletion"] == "deleted"  # a fact about Telnyx
    assert ours.archived["pending-there"]["deletion"] == "pending"  # a later run checks it
    assert ours.archived["ours-only"]["deletion"] is None
    assert set(ours.no_audio) == {"silent"}  # an archived recording is not "without audio"
    assert set(ours.not_final) == {"slow"}
    merged = ours.dumps()
    ours.merge(theirs)
    assert ours.dumps() == merged  # merging again changes nothing


def test_a_merge_brings_back_no_not_final_recording_this_run_read_and_no_longer_lists():
    stored = manifest()
    stored.set_unarchived([{"sid": "gone", "status": "in-progress"}], [])
    ours = Manifest.loads(stored.dumps(), account_sid=ACCOUNT, interval=INTERVAL)
    ours.set_unarchived([], [])  # this run's listing: "gone" was deleted
    stored.set_unarchived(
        [{"sid": "gone", "status": "in-progress"}, {"sid": "new", "status": "paused"}], []
    )  # meanwhile another run named a new one
    ours.merge(stored)
    assert set(ours.not_final) == {"new"}
