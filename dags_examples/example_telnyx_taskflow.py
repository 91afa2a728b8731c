"""Record a call in TaskFlow style: the call SID comes from a task, the wait from the start's XCom.

``find_call`` stands for whatever gives you the call to record (a lookup in your contact-centre system, a
message, an upstream DAG); here it reads the ``call_sid`` param. ``StartCallRecordingOperator`` pushes the
recording's SID and URI to XCom as soon as the recording exists (keys ``recording_sid`` and
``recording_uri``), and ``start.output["recording_uri"]`` feeds a deferrable sensor: no template strings.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Param, dag, task

from telnyx_provider.operators.recording import StartCallRecordingOperator
from telnyx_provider.sensors.recording import RecordingCompletedSensor


@dag(
    dag_id="example_telnyx_taskflow",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    params={"call_sid": Param("", type="string", description="The live call to record (v3:...).")},
    default_args={"retries": 2, "retry_delay": timedelta(seconds=10)},
    tags=["telnyx", "example"],
)
def example_telnyx_taskflow() -> None:
    # [START howto_taskflow]
    @task
    def find_call(params: dict[str, Any] | None = None) -> str:
        """The call to record."""
        return str((params or {})["call_sid"])

    start = StartCallRecordingOperator(
        task_id="start_recording",
        call_sid=find_call(),  # type: ignore[arg-type]
        recording_channels="dual",
    )
    wait = RecordingCompletedSensor(
        task_id="wait_for_recording",
        recording_uri=start.output["recording_uri"],  # type: ignore[index]
        deferrable=True,
        poke_interval=2,
        timeout=15 * 60,
    )

    @task
    def report(recording: dict[str, Any]) -> dict[str, Any]:
        """What downstream tasks get: the recording's SID, duration and status (no media link)."""
        return {key: recording[key] for key in ("sid", "duration", "status")}

    report(wait.output)  # type: ignore[arg-type]
    # [END howto_taskflow]


example_telnyx_taskflow()
