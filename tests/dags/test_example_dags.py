"""The example DAGs: they parse cleanly, look nothing up at parse time, and run to success on the sandbox."""

from __future__ import annotations

import os
from pathlib import Path

from airflow.sdk import BaseHook

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "dags_examples"

try:  # Airflow 3.2+
    from airflow.dag_processing.dagbag import DagBag
except ImportError:  # Airflow 3.1
    from airflow.models.dagbag import DagBag


def dag_from_folder(dag_id: str):
    """A DAG from the test DAGS_FOLDER (dag.test() runs only DAGs from files there)."""
    from tests.conftest import DAGS_FOLDER

    bag = DagBag(dag_folder=str(DAGS_FOLDER))  # LOAD_EXAMPLES is off (tests/conftest.py)
    assert bag.import_errors == {}
    return bag.get_dag(dag_id)


def task_states(run) -> dict[str, str]:
    """task_id -> state of a finished run (mapped tasks collapse to one entry per state)."""
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def test_example_dags_parse_without_errors_or_connection_lookups(monkeypatch):
    looked_up: list[str] = []

    def record(cls, conn_id):
        looked_up.append(conn_id)
        raise AssertionError("connection lookup at parse time")

    monkeypatch.setattr(BaseHook, "get_connection", classmethod(record))
    monkeypatch.delenv("AIRFLOW_CONN_TELNYX_DEFAULT", raising=False)
    bag = DagBag(dag_folder=str(EXAMPLES))
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == {
        "example_telnyx_archive",
        "example_telnyx_call_recording",
        "example_telnyx_record_many_calls",
        "example_telnyx_start_recording_with_callback",
        "example_telnyx_store_finished_recordings",
        "example_telnyx_recording_arrived",
        "example_telnyx_taskflow",
    }
    assert looked_up == []


def test_example_call_recording_runs_to_success(airflow_db, sandbox_for_dags, tmp_path):
    call_sid = sandbox_for_dags.create_call()
    run = dag_from_folder("example_telnyx_call_recording").test(
        run_conf={"call_sid": call_sid, "destination": f"file://{tmp_path}/"}
    )
    assert str(run.state) == "success", task_states(run)
    assert set(task_states(run).values()) == {"success"}
    stats = sandbox_for_dags.stats()
    assert stats["starts_per_call"] == {call_sid: 1}
    (sid,) = stats["completed_at"]
    assert stats["gets_per_recording"][sid] >= 1


def test_example_record_many_calls_runs_to_success(airflow_db, sandbox_for_dags):
    calls = [sandbox_for_dags.create_call() for _ in range(3)]
    run = dag_from_folder("example_telnyx_record_many_calls").test(run_conf={"call_sids": calls})
    assert str(run.state) == "success", task_states(run)
    stats = sandbox_for_dags.stats()
    assert stats["starts_per_call"] == dict.fromkeys(calls, 1)
    assert len(stats["completed_at"]) == 3
    mapped = [ti for ti in run.get_task_instances() if ti.task_id == "wait_for_recording"]
    assert len(mapped) == 3
    assert os.environ["AIRFLOW_CONN_TELNYX_DEFAULT"] == sandbox_for_dags.airflow_conn_json()


def test_example_taskflow_runs_to_success(airflow_db, sandbox_for_dags):
    # The call SID comes from a task; start.output["recording_uri"] (an XCom key the start pushes) feeds a
    # deferrable sensor.
    call_sid = sandbox_for_dags.create_call()
    run = dag_from_folder("example_telnyx_taskflow").test(run_conf={"call_sid": call_sid})
    assert str(run.state) == "success", task_states(run)
    stats = sandbox_for_dags.stats()
    assert stats["starts_per_call"] == {call_sid: 1}
    (sid,) = stats["completed_at"]
    [start] = [ti for ti in run.get_task_instances() if ti.task_id == "start_recording"]
    assert start.xcom_pull(task_ids="start_recording", key="recording_sid") == sid
    [report] = [ti for ti in run.get_task_instances() if ti.task_id == "report"]
    reported = report.xcom_pull(task_ids="report")
    assert reported["sid"] == sid
    assert reported["status"] == "completed"
