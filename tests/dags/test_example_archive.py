"""example_telnyx_archive under ``dag.test()`` against a sandbox seeded with past days of recordings.

Each run archives its own data interval (one UTC day): every final recording created that day, from every
source, once; the not-final ones named; then the retention task deletes from the sandbox only what the
manifests prove archived and older than ``keep_for``.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone

import pytest
import requests

from telnyx_provider.archive_plan import created_at
from telnyx_provider.sandbox import Sandbox
from tests.dags.test_example_dags import dag_from_folder, task_states
from tests.dags.test_recording_storage_dags import _xcom

DAG_ID = "example_telnyx_archive"


@pytest.fixture
def seeded(monkeypatch):
    # The days archived ended before the test; between 00:00 and 00:10 UTC the last one would still be
    # settling (10 minutes by default): the task would wait on the triggerer until it has.
    monkeypatch.setenv("TELNYX_ARCHIVE_SETTLE", "0")
    with Sandbox(port=0, processing_delay=0.1, seed=18) as sb:
        monkeypatch.setenv("AIRFLOW_CONN_TELNYX_DEFAULT", sb.airflow_conn_json())
        history = sb.seed_history(3, per_day=8, absent_rate=0.2, not_final=2, seed=18)
        yield sb, history


def _midnight(days_ago: int) -> datetime:
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=days_ago)


def _listed(sb) -> dict[str, dict]:
    url = f"{sb.base_url}/texml/Accounts/{sb.account_sid}/Recordings.json"
    headers = {"Authorization": f"Bearer {sb.api_key}"}
    reply = requests.get(url, params={"PageSize": 1000}, headers=headers, timeout=10)
    return {item["sid"]: item for item in reply.json()["recordings"]}


def _created(item: dict) -> datetime:
    moment = created_at(item)  # RFC 2822 or ISO 8601, as the sandbox is told to send it
    assert moment is not None, item
    return moment


def test_daily_runs_archive_their_day_once_and_retention_deletes_only_what_is_proven(
    airflow_db, seeded, tmp_path
):
    sb, history = seeded
    before = _listed(sb)
    conf = {"destination": f"file://{tmp_path}/archive/", "keep_for": "P1D"}
    dag = dag_from_folder(DAG_ID)
    assert dag.catchup is True

    runs = []
    for days_ago in (1, 0):  # manual runs at the last two midnights: each covers the day before it
        run = dag.test(logical_date=_midnight(days_ago), run_conf=conf)
        assert str(run.state) == "success", task_states(run)
        assert run.data_interval_end - run.data_interval_start == timedelta(days=1)
        runs.append(run)

    archived: dict[str, dict] = {}
    for run in runs:
        result = _xcom(DAG_ID, run.run_id, "archive_recordings")
        manifest_path = tmp_path / "archive" / "_manifests" / result["manifest"].rpartition("/")[2]
        manifest = json.loads(manifest_path.read_text())
        assert manifest["date_from"] == run.data_interval_start.isoformat()
        assert manifest["totals"]["recordings"] == result["recordings"] == len(manifest["recordings"])
        for entry in manifest["recordings"]:
            stored = tmp_path / "archive" / entry["path"].removeprefix(f"file://{tmp_path}/archive/")
            assert hashlib.sha256(stored.read_bytes()).hexdigest() == entry["sha256"]
            assert entry["path"].endswith(f"/{entry['call_sid']}/{entry['recording_sid']}.wav")
            archived[entry["recording_sid"]] = entry
    _check_progress_in_the_task_state_store(runs, archived)
    # Exactly the final recordings with audio created on those two days; the others named, not archived.
    intervals = [(run.data_interval_start, run.data_interval_end) for run in runs]
    assert intervals[1][0] == intervals[0][1]  # consecutive days
    expected = {
        sid
        for sid, item in before.items()
        if item["status"] == "completed" and intervals[0][0] <= _created(item) < intervals[1][1]
    }
    assert set(archived) == expected
    sources = {entry["source"] for entry in archived.values()}
    assert sources == {before[sid]["source"] for sid in expected}
    assert len(sources) >= 4  # <Dial record>, <Record>, the API, conferences, trunks...
    assert {item["recording_sid"] for item in manifest["not_final"]} == set(history["not_final"])
    assert {item["status"] for item in manifest["no_audio"]} <= {"absent"}

    # Retention deleted exactly the archived recordings created before its cutoff, nothing else.
    cutoff = datetime.fromisoformat(_xcom(DAG_ID, runs[-1].run_id, "apply_retention")["cutoff"])
    deleted = set(before) - set(_listed(sb))
    assert deleted == {sid for sid in expected if _created(before[sid]) < cutoff}
    assert deleted  # the first day is wholly older than the cutoff
    recorded = {
        entry["recording_sid"]
        for path in (tmp_path / "archive" / "_manifests").glob("*.json")
        for entry in json.loads(path.read_text())["recordings"]
        if entry["deletion"] == "deleted"
    }
    assert recorded == deleted


def _check_progress_in_the_task_state_store(runs, archived: dict[str, dict]) -> None:
    """On Airflow 3.3 the archive recorded each copy in Airflow's own task state store, as it landed."""
    try:
        from airflow.models.task_state_store import TaskStateStoreModel
    except ImportError:  # Airflow 3.1/3.2: no task state store
        return
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(
            select(TaskStateStoreModel).where(
                TaskStateStoreModel.dag_id == DAG_ID,
                TaskStateStoreModel.run_id.in_([run.run_id for run in runs]),
                TaskStateStoreModel.task_id == "archive_recordings",
            )
        ).all()
        recorded = {
            row[0]
            for item in rows
            if item.key.startswith("telnyx_archive:")
            for row in json.loads(item.value)
        }
    assert recorded == set(archived)


def test_catchup_gives_every_day_since_the_start_date_its_own_run_with_its_tasks(airflow_db, monkeypatch):
    """Review of issue 18: what docs/guides/archiving.md promises of ``catchup=True`` — one run per UTC day
    from the start
    date, contiguous (nothing between two days is skipped or covered twice), each started when its day ends,
    each with a logical date at or after the tasks' start date (so the scheduler creates its tasks)."""
    from airflow.timetables.base import TimeRestriction

    start = _midnight(5)
    monkeypatch.setenv("TELNYX_ARCHIVE_START", start.isoformat())
    dag = dag_from_folder(DAG_ID)
    assert dag.catchup is True
    assert dag.is_paused_upon_creation is True
    assert dag.start_date == start
    restriction = TimeRestriction(earliest=dag.start_date, latest=None, catchup=True)
    # The scheduler's view of the DAG: its serialized form, with Airflow's own timetable.
    try:
        from airflow.serialization.serialized_objects import DagSerialization as Serializer
    except ImportError:  # Airflow 3.1/3.2
        from airflow.serialization.serialized_objects import SerializedDAG as Serializer

    timetable = Serializer.from_dict(Serializer.to_dict(dag)).timetable

    runs, last = [], None
    for _ in range(5):
        info = timetable.next_dagrun_info(last_automated_data_interval=last, restriction=restriction)
        assert info is not None
        runs.append(info)
        last = info.data_interval

    assert [(run.data_interval.start, run.data_interval.end) for run in runs] == [
        (start + timedelta(days=day), start + timedelta(days=day + 1)) for day in range(5)
    ]
    for run in runs:
        assert run.run_after == run.data_interval.end  # a day is archived once it has ended
        assert run.logical_date >= dag.start_date
        assert all(task.start_date is None or task.start_date <= run.logical_date for task in dag.tasks)
