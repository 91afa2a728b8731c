"""System-test DAG: a recording waited for by a reschedule-mode sensor (the scheduler does the waiting).

Between two looks the sensor frees its worker slot and sits in ``up_for_reschedule``; the system test
must see it there at least once.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag

from telnyx_provider.operators.recording import StartCallRecordingOperator
from telnyx_provider.sensors.recording import RecordingCompletedSensor


@dag(
    dag_id="system_telnyx_reschedule_sensor",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    params={"call_sid": Param("", type="string", description="The live call to record.")},
    # Airflow's reschedule/defer race (apache/airflow #71172) can fail a healthy try; retries recover.
    default_args={"retries": 2, "retry_delay": timedelta(seconds=2)},
    tags=["telnyx", "system-test"],
)
def system_telnyx_reschedule_sensor() -> None:
    start = StartCallRecordingOperator(task_id="start_recording", call_sid="{{ params.call_sid }}")
    wait = RecordingCompletedSensor(
        task_id="wait_for_recording",
        recording_sid="{{ ti.xcom_pull(task_ids='start_recording')['sid'] }}",
        mode="reschedule",
        poke_interval=5,
        timeout=10 * 60,
    )
    start >> wait


system_telnyx_reschedule_sensor()
