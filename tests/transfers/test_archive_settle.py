"""An interval is listed only once it has settled (review of issue 18): Telnyx's list is eventually
consistent and its clock is not ours, so a recording created just before ``date_to`` can show up after a run
that lists at once, and no run of another interval holds it."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.transfers.archive_world import archive_operator, route


def stored(url: str) -> Path:
    assert url.startswith("file://")
    return Path(url.removeprefix("file://"))


def _record_now(sandbox) -> str:
    """A recording made right now on the sandbox, final within a moment; its SID."""
    from telnyx_provider.hooks.recording import RecordingHook
    from tests.sandbox.conftest import wait_for

    call_sid = sandbox.create_call(audio_seconds=2)
    sid = RecordingHook().start_call_recording(call_sid)["sid"]
    sandbox.hangup(call_sid)
    wait_for(lambda: sandbox.media(sid) is not None and _status(sandbox, sid) == "completed", timeout=30)
    return sid


def _status(sandbox, sid: str) -> str:
    from telnyx_provider.hooks.recording import RecordingHook

    return str(RecordingHook().get_recording(sid).get("status"))


def test_a_recording_listed_late_is_lost_when_its_interval_is_listed_at_once(monkeypatch, tmp_path):
    """The reproduction: Telnyx's list is eventually consistent (here 30 s); the run of an interval that ends
    right after a recording's creation lists before the recording shows up, and the next interval does not
    hold it. No run ever archives it (unless someone re-runs that interval by hand)."""
    from telnyx_provider.sandbox import Sandbox
    from tests.transfers.archive_world import MEDIA_CAP

    with Sandbox(port=0, processing_delay=0.05, media_seconds_cap=MEDIA_CAP, list_lag=30) as sandbox:
        monkeypatch.setenv("AIRFLOW_CONN_TELNYX_DEFAULT", sandbox.airflow_conn_json())
        start = datetime.now(timezone.utc) - timedelta(minutes=5)
        sid = _record_now(sandbox)
        end = datetime.now(timezone.utc)  # the interval ends right after the recording began

        result = archive_operator(dst=str(tmp_path), date_from=start, date_to=end, settle=0).execute({})

    assert result["recordings"] == 0  # listed before the recording showed up: it is in no manifest
    assert sid  # and the next interval starts after it was created


def test_an_interval_is_listed_only_once_it_has_settled_so_a_late_listing_is_archived(monkeypatch, tmp_path):
    """The fix: the run waits ``settle`` after ``date_to`` before it lists (in the task here; deferred on the
    triggerer when deferrable), so a recording Telnyx lists up to ``settle`` late (or stamps before
    ``date_to`` by a clock behind ours) is in its interval's manifest."""
    from telnyx_provider.sandbox import Sandbox
    from tests.transfers.archive_world import MEDIA_CAP

    with Sandbox(port=0, processing_delay=0.05, media_seconds_cap=MEDIA_CAP, list_lag=2) as sandbox:
        monkeypatch.setenv("AIRFLOW_CONN_TELNYX_DEFAULT", sandbox.airflow_conn_json())
        start = datetime.now(timezone.utc) - timedelta(minutes=5)
        sid = _record_now(sandbox)
        end = datetime.now(timezone.utc)
        op = archive_operator(dst=str(tmp_path), date_from=start, date_to=end, settle=3, deferrable=False)

        result = op.execute({})
        listed_at = datetime.now(timezone.utc)

    manifest = json.loads(stored(result["manifest"]).read_text())
    assert [entry["recording_sid"] for entry in manifest["recordings"]] == [sid]
    assert listed_at >= end + timedelta(seconds=3)


def test_a_deferrable_run_waits_for_the_interval_to_settle_on_the_triggerer(history, tmp_path):
    from airflow.providers.standard.triggers.temporal import DateTimeTrigger

    try:
        from airflow.sdk.exceptions import TaskDeferred
    except ImportError:  # pragma: no cover - Airflow 3.1
        from airflow.exceptions import TaskDeferred

    end = datetime.now(timezone.utc).replace(microsecond=0)
    op = archive_operator(
        dst=str(tmp_path), date_from=end - timedelta(hours=1), date_to=end, settle=600, deferrable=True
    )
    with pytest.raises(TaskDeferred) as deferred:
        op.execute({})

    trigger = deferred.value.trigger
    assert isinstance(trigger, DateTimeTrigger)
    assert trigger.serialize()[1]["moment"] == end + timedelta(seconds=600)
    assert deferred.value.method_name == "execute_settled"
    assert route(history, "GET /Recordings") == 0  # nothing listed before it settles
    result = op.execute_settled({}, event=None)  # what the task does once the trigger fires
    assert result["date_to"] == end.isoformat()
