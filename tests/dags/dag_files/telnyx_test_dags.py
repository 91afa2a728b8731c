"""DAGs used by the test suite only (copied into the test DAGS_FOLDER by tests/conftest.py)."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from telnyx_provider.operators.recording import StartCallRecordingOperator
from telnyx_provider.sensors.recording import RecordingCompletedSensor

_START = pendulum.datetime(2024, 1, 1, tz="UTC")

with DAG("test_telnyx_operator_deferred_wait", schedule=None, start_date=_START, catchup=False):
    StartCallRecordingOperator(
        task_id="record",
        call_sid="{{ params.call_sid }}",
        wait_for_completion=True,
        deferrable=True,
        poll_interval=0.2,
    )

with DAG("test_telnyx_operator_deferred_timeout", schedule=None, start_date=_START, catchup=False):
    StartCallRecordingOperator(
        task_id="record",
        call_sid="{{ params.call_sid }}",
        wait_for_completion=True,
        deferrable=True,
        poll_interval=0.2,
        timeout=1,
    )

with DAG("test_telnyx_sensor_deferred", schedule=None, start_date=_START, catchup=False):
    start = StartCallRecordingOperator(task_id="record", call_sid="{{ params.call_sid }}")
    wait = RecordingCompletedSensor(
        task_id="wait",
        recording_sid="{{ ti.xcom_pull(task_ids='record')['sid'] }}",
        deferrable=True,
        poke_interval=0.2,
        timeout=60,
    )
    start >> wait

with DAG("test_telnyx_sensor_reschedule", schedule=None, start_date=_START, catchup=False):
    start = StartCallRecordingOperator(task_id="record", call_sid="{{ params.call_sid }}")
    wait = RecordingCompletedSensor(
        task_id="wait",
        recording_uri="{{ ti.xcom_pull(task_ids='record')['uri'] }}",
        mode="reschedule",
        poke_interval=0.2,
        timeout=60,
    )
    start >> wait

with DAG("test_telnyx_operator_poke_wait", schedule=None, start_date=_START, catchup=False):
    StartCallRecordingOperator(
        task_id="record",
        call_sid="{{ params.call_sid }}",
        wait_for_completion=True,
        deferrable=False,
        poll_interval=0.2,
    )
