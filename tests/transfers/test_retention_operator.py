"""RecordingsRetentionOperator against the sandbox: it deletes only what a manifest proves archived."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from telnyx_provider.errors import TelnyxValidationError
from telnyx_provider.transfers.recording import RecordingsRetentionOperator
from tests.transfers.archive_world import archive_operator, created, day, finals_of, listed, route


def stored(url: str) -> Path:
    return Path(url.removeprefix("file://"))


def retention(**kwargs) -> RecordingsRetentionOperator:
    kwargs.setdefault("task_id", "retention")
    kwargs.setdefault("keep_for", "PT1H")
    return RecordingsRetentionOperator(**kwargs)


def archived_days(history, tmp_path, *days_ago: int) -> dict[str, dict]:
    """Archive those days; returns every manifest entry by SID."""
    entries: dict[str, dict] = {}
    for days in days_ago:
        result = archive_operator(dst=str(tmp_path), **day(days)).execute({})
        manifest = json.loads(stored(result["manifest"]).read_text())
        entries.update({entry["recording_sid"]: entry for entry in manifest["recordings"]})
    return entries


def test_a_dry_run_lists_what_it_would_delete_and_deletes_nothing(history, tmp_path, capsys):
    archived = archived_days(history, tmp_path, 3, 2)
    before = listed(history)

    result = retention(dst=str(tmp_path), dry_run=True).execute({})

    assert result["dry_run"] is True
    assert result["would_delete"] == len(archived) == len(result["would_delete_sids"])
    assert set(result["would_delete_sids"]) == set(archived)
    assert result["deleted"] == 0
    assert route(history, "DELETE /Recordings/{sid}") == 0
    assert listed(history).keys() == before.keys()
    logged = capsys.readouterr().out
    for sid in archived:
        assert f"Would delete recording {sid}" in logged


def test_it_deletes_the_archived_and_refuses_the_unarchived_naming_each(history, tmp_path, capsys):
    archived = archived_days(history, tmp_path, 3)  # day 2 and day 1 are not archived
    everything = listed(history)
    silent = {sid for sid, item in everything.items() if item["status"] == "absent"}
    unarchived = {sid for sid in everything if sid not in archived and sid not in silent}
    assert unarchived  # the later days' recordings with audio, and the not-final ones

    result = retention(dst=str(tmp_path)).execute({})

    remaining = set(listed(history))
    assert set(archived).isdisjoint(remaining)
    assert unarchived <= remaining
    assert result["deleted"] == len(archived) == route(history, "DELETE /Recordings/{sid}")
    assert result["refused"] == len(unarchived)
    assert set(result["refused_sids"]) == unarchived
    assert result["no_audio"] == len(silent)  # never deleted, whatever day (Telnyx lists them without audio)
    logged = capsys.readouterr().out
    for sid in unarchived:
        reason = "no manifest names it" if everything[sid]["status"] == "completed" else "it is not final"
        assert f"Not deleting recording {sid}: {reason}" in logged
    manifest = json.loads(next((tmp_path / "_manifests").glob("*.json")).read_text())
    assert {entry["deletion"] for entry in manifest["recordings"]} == {"deleted"}


def test_recordings_without_audio_are_counted_not_deleted(history, tmp_path):
    archived_days(history, tmp_path, 3)
    silent = [sid for sid, item in listed(history).items() if item["status"] == "absent"]
    assert any(day(3)["date_from"] <= _created(listed(history)[sid]) < day(3)["date_to"] for sid in silent)
    result = retention(dst=str(tmp_path)).execute({})
    assert result["no_audio"] == len(silent)
    assert set(silent) <= set(listed(history))


def test_a_missing_or_shrunk_copy_is_refused_and_its_recording_kept(history, tmp_path):
    archived = archived_days(history, tmp_path, 3)
    gone, shrunk, changed, *_ = sorted(archived.values(), key=lambda entry: entry["recording_sid"])
    stored(gone["path"]).unlink()
    stored(shrunk["path"]).write_bytes(stored(shrunk["path"]).read_bytes()[:10])
    data = bytearray(stored(changed["path"]).read_bytes())
    data[200] ^= 0xFF
    stored(changed["path"]).write_bytes(bytes(data))

    by_size = retention(dst=str(tmp_path), dry_run=True, verify_sha256=False).execute({})
    assert set(by_size["refused_sids"]) & set(archived) == {gone["recording_sid"], shrunk["recording_sid"]}
    assert changed["recording_sid"] in by_size["would_delete_sids"]  # the same size: only a re-hash sees it

    by_hash = retention(dst=str(tmp_path)).execute({})  # read back whole: the default
    kept = {gone["recording_sid"], shrunk["recording_sid"], changed["recording_sid"]}
    assert set(by_hash["refused_sids"]) & set(archived) == kept
    assert by_hash["deleted"] == len(archived) - 3
    assert kept <= set(listed(history))
    assert set(archived) - kept == set(archived) - set(listed(history))


def test_a_manifest_of_another_account_proves_nothing(history, tmp_path, capsys):
    archived = archived_days(history, tmp_path, 3)
    path = next((tmp_path / "_manifests").glob("*.json"))
    data = json.loads(path.read_text())
    data["account_sid"] = "someone-else"
    path.write_text(json.dumps(data))

    result = retention(dst=str(tmp_path)).execute({})

    assert result["deleted"] == 0
    assert set(archived) <= set(result["refused_sids"])
    assert "Skipping" in capsys.readouterr().out


@pytest.mark.parametrize("keep_for", ["30 days", 0, "P", None])
def test_a_bad_period_is_refused_when_parsed(keep_for):
    with pytest.raises(TelnyxValidationError, match="keep_for"):
        retention(dst="/tmp/x", keep_for=keep_for)


def test_a_templated_period_is_checked_before_any_request(history, tmp_path):
    op = retention(dst=str(tmp_path), keep_for="{{ params.keep_for }}")
    op.keep_for = "forever"  # what rendering gave
    with pytest.raises(TelnyxValidationError, match="keep_for"):
        op.execute({})
    assert history.stats()["requests_total"] == 0


def test_only_recordings_older_than_the_period_are_considered(history, tmp_path):
    archived = archived_days(history, tmp_path, 3, 2, 1)
    result = retention(dst=str(tmp_path), keep_for="P2D", dry_run=True).execute({})
    older = {sid for sid in archived if _created(listed(history)[sid]) < _cutoff(result)}
    assert set(result["would_delete_sids"]) == older
    assert older < set(archived)  # the newer ones are kept whatever their archive
    assert set(finals_of(history, 3)) <= older


def _created(item):
    return created(item)


def _cutoff(result):
    from datetime import datetime

    return datetime.fromisoformat(result["cutoff"])
