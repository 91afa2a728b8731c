"""System-test DAG: the operator starts a recording and waits for it itself, deferred to the triggerer.

The system test runs it twice: once the caller hangs up (the final recording lands in XCom), once the
task is marked failed through the REST API while deferred (the recording must be stopped).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag

from telnyx_provider.operators.recording import StartCallRecordingOperator


@dag(
    dag_id="system_telnyx_operator_deferred",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    params={"call_sid": Param("", type="string", description="The live call to record.")},
    default_args={"retries": 2, "retry_delay": timedelta(seconds=2)},
    tags=["telnyx", "system-test"],
)
def system_telnyx_operator_deferred() -> None:
    StartCallRecordingOperator(
        task_id="record_call",
        call_sid="{{ params.call_sid }}",
        wait_for_completion=True,
        deferrable=True,
        poll_interval=2,
        timeout=10 * 60,
    )


system_telnyx_operator_deferred()
