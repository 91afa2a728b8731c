"""Distributed system test: deferred waits whose task has an ``execution_timeout`` shorter than the call.

Airflow 3.3 does not apply ``execution_timeout`` to a deferred task; the operator and the sensor carry it into
their trigger's deadline. At that deadline the operator stops the recording it started, the sensor leaves
the recording (which it did not start) alone; both say why in the task log. No retry: a timeout is final.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag

from telnyx_provider.operators.recording import StartCallRecordingOperator
from telnyx_provider.sensors.recording import RecordingCompletedSensor

#: The task's execution_timeout, far shorter than the calls (which never hang up by themselves).
EXECUTION_TIMEOUT = timedelta(seconds=20)


@dag(
    dag_id="system_dist_execution_timeout",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "operator_call_sid": Param("", type="string", description="Call for the operator's own wait."),
        "sensor_call_sid": Param("", type="string", description="Call whose recording the sensor waits for."),
    },
    # A timeout is final (a retry would start another recording): no retries.
    default_args={"retries": 0},
    tags=["telnyx", "system-test"],
)
def system_dist_execution_timeout() -> None:
    StartCallRecordingOperator(
        task_id="operator_wait",
        call_sid="{{ params.operator_call_sid }}",
        wait_for_completion=True,
        deferrable=True,
        poll_interval=2,
        execution_timeout=EXECUTION_TIMEOUT,
    )
    start = StartCallRecordingOperator(task_id="start_for_sensor", call_sid="{{ params.sensor_call_sid }}")
    wait = RecordingCompletedSensor(
        task_id="sensor_wait",
        recording_sid="{{ ti.xcom_pull(task_ids='start_for_sensor')['sid'] }}",
        deferrable=True,
        poke_interval=2,
        execution_timeout=EXECUTION_TIMEOUT,
    )
    start >> wait


system_dist_execution_timeout()
