"""The stored-recording path under ``dag.test()``: the file, the asset event, the consumer DAG, the link.

The consumer's run is created the way Airflow's scheduler creates it (``DagModel.dags_needing_dagruns`` and
``SchedulerJobRunner._create_dag_runs_asset_triggered``: a run that consumed the producer's asset events),
then its task runs with ``airflow tasks test`` on that run: ``triggering_asset_events`` is what Airflow
builds from the consumed events, not something the test hands over.
"""

from __future__ import annotations

import hashlib
import inspect
import wave
from datetime import datetime, timezone

import pytest
from sqlalchemy import select

from tests.dags.test_example_dags import dag_from_folder, task_states

PRODUCER = "example_telnyx_call_recording"
CONSUMER = "example_telnyx_recording_arrived"
ASSET_NAME = "telnyx_call_recordings"


def _unpause(dag_id: str) -> None:
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session

    with create_session() as session:
        model = session.get(DagModel, dag_id)
        if model is not None:
            model.is_paused = False


def _xcom(dag_id: str, run_id: str, task_id: str, key: str = "return_value"):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalars(
            XComModel.get_many(run_id=run_id, dag_ids=dag_id, task_ids=task_id, key=key)
        ).first()
        return None if row is None else XComModel.deserialize_value(row)


def _create_asset_triggered_run(dag_id: str, *, required: bool = True) -> str | None:
    """What the scheduler's loop does for asset-scheduled DAGs: the run, with the events it consumed."""
    from airflow.jobs.job import Job
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
    from airflow.models.dag import DagModel
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunType

    with create_session() as session:
        query, triggered_date_by_dag = DagModel.dags_needing_dagruns(session)
        models = [model for model in query.all() if model.dag_id == dag_id]
        if not models and not required:
            return None
        assert models, f"{dag_id} was not queued by the asset event"
        runner = SchedulerJobRunner(job=Job())
        arguments = {"dag_models": models, "session": session}
        if "triggered_date_by_dag" in inspect.signature(runner._create_dag_runs_asset_triggered).parameters:
            arguments["triggered_date_by_dag"] = triggered_date_by_dag  # Airflow 3.1
        runner._create_dag_runs_asset_triggered(**arguments)
        session.flush()
        run = session.scalars(
            select(DagRun)
            .where(DagRun.dag_id == dag_id, DagRun.run_type == DagRunType.ASSET_TRIGGERED)
            .order_by(DagRun.id.desc())
        ).first()
        assert run is not None
        # The scheduler's next step (_start_queued_dagruns): the queued run starts.
        run.state, run.start_date = DagRunState.RUNNING, datetime.now(timezone.utc)
        return str(run.run_id)


def _run_task_of(dag_id: str, task_id: str, run_id: str) -> None:
    """``airflow tasks test DAG TASK RUN_ID``, in this process (it shares the test's database session)."""
    from argparse import Namespace

    from airflow.cli.commands.task_command import task_test

    task_test(
        Namespace(
            dag_id=dag_id,
            task_id=task_id,
            logical_date_or_run_id=run_id,
            bundle_name=None,
            task_params=None,
            map_index=-1,
            env_vars=None,
            post_mortem=False,
        )
    )


@pytest.fixture
def unpaused_consumer(monkeypatch):
    """The consumer DAG unpaused (a paused DAG is never queued by an asset event)."""
    monkeypatch.setenv("AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION", "False")
    _unpause(CONSUMER)
    # Recordings stored by earlier tests may have queued the consumer: a running scheduler would have
    # created that run long ago, so do it now, and this test's run consumes this test's event only.
    _create_asset_triggered_run(CONSUMER, required=False)


def test_stored_recording_reaches_the_consumer_dag_through_the_asset_event(
    airflow_db, sandbox_for_dags, tmp_path, unpaused_consumer
):
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    call_sid = sandbox_for_dags.create_call()
    run = dag_from_folder(PRODUCER).test(
        run_conf={"call_sid": call_sid, "destination": f"file://{tmp_path}/"}
    )
    assert str(run.state) == "success", task_states(run)

    stored = _xcom(PRODUCER, run.run_id, "store_recording")
    path = tmp_path / f"{stored['recording_sid']}.wav"
    assert stored["path"] == f"file://{path}"
    assert stored["size"] == path.stat().st_size
    assert stored["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    with wave.open(str(path), "rb") as audio:
        assert audio.getnframes() > 0
    assert "media_url" not in stored

    with create_session() as session:
        extras = session.scalars(
            select(AssetEvent.extra)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetModel.name == ASSET_NAME, AssetEvent.source_run_id == run.run_id)
        ).all()
    assert extras == [stored]

    consumer_run_id = _create_asset_triggered_run(CONSUMER)
    assert consumer_run_id is not None
    _run_task_of(CONSUMER, "report_arrivals", consumer_run_id)
    reported = _xcom(CONSUMER, consumer_run_id, "report_arrivals")
    assert reported == [stored]


def test_the_link_of_the_storage_and_start_tasks_points_at_the_recording(
    airflow_db, sandbox_for_dags, tmp_path
):
    from telnyx_provider.links import portal_recording_url

    call_sid = sandbox_for_dags.create_call()
    run = dag_from_folder(PRODUCER).test(
        run_conf={"call_sid": call_sid, "destination": f"file://{tmp_path}/"}
    )
    assert str(run.state) == "success", task_states(run)
    (recording_sid,) = sandbox_for_dags.stats()["completed_at"]

    expected = portal_recording_url(recording_sid)
    assert _xcom(PRODUCER, run.run_id, "store_recording", "_link_TelnyxRecordingLink") == expected
    assert _xcom(PRODUCER, run.run_id, "start_recording", "_link_TelnyxRecordingLink") == expected
