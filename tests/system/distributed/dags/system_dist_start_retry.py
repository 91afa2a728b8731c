"""Distributed system test: a start whose Celery worker is SIGKILLed before it stores the recording's SID.

The test holds the start's reply (the sandbox carried the start out), kills the worker running the task, and
checks that the retry resumes the recording the first try started instead of starting another.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag

from telnyx_provider.operators.recording import StartCallRecordingOperator


@dag(
    dag_id="system_dist_start_retry",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    params={"call_sid": Param("", type="string", description="The live call to record.")},
    default_args={"retries": 2, "retry_delay": timedelta(seconds=2)},
    tags=["telnyx", "system-test"],
)
def system_dist_start_retry() -> None:
    StartCallRecordingOperator(task_id="start_recording", call_sid="{{ params.call_sid }}")


system_dist_start_retry()
