"""System-test DAG: waits that time out on calls that never hang up, deferred and in the worker.

Each task must fail with the timeout and stop its recording rather than leave it running.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag

from telnyx_provider.operators.recording import StartCallRecordingOperator

#: Seconds each wait may last before it gives up.
WAIT_TIMEOUT = 6


@dag(
    dag_id="system_telnyx_operator_timeout",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "deferred_call_sid": Param("", type="string", description="Call for the deferred wait."),
        "worker_call_sid": Param("", type="string", description="Call for the wait in the worker."),
    },
    default_args={"retries": 2, "retry_delay": timedelta(seconds=2)},
    tags=["telnyx", "system-test"],
)
def system_telnyx_operator_timeout() -> None:
    StartCallRecordingOperator(
        task_id="deferred_wait",
        call_sid="{{ params.deferred_call_sid }}",
        wait_for_completion=True,
        deferrable=True,
        poll_interval=1,
        timeout=WAIT_TIMEOUT,
    )
    StartCallRecordingOperator(
        task_id="worker_wait",
        call_sid="{{ params.worker_call_sid }}",
        wait_for_completion=True,
        deferrable=False,
        poll_interval=1,
        timeout=WAIT_TIMEOUT,
    )


system_telnyx_operator_timeout()
