"""Distributed system test: many recordings, each started and waited for by one deferred operator.

One mapped ``StartCallRecordingOperator(wait_for_completion=True, deferrable=True)`` per call SID in the
``call_sids`` param: each owns its recording (a user's kill stops it), and the waits spread over the
triggerers. The test kills and freezes triggerers while they wait, and marks some failed.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Param, dag, task

from telnyx_provider.operators.recording import StartCallRecordingOperator


@dag(
    dag_id="system_dist_deferred_waits",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "call_sids": Param([], type="array", description="The live calls to record."),
        "poll_interval": Param(5, type="number", description="Seconds between two looks."),
    },
    max_active_tasks=256,
    # Airflow's defer race (apache/airflow #71172) can fail a healthy try; retries recover.
    default_args={"retries": 3, "retry_delay": timedelta(seconds=2)},
    tags=["telnyx", "system-test"],
)
def system_dist_deferred_waits() -> None:
    @task
    def calls(params: dict[str, Any] | None = None) -> list[str]:
        """The call SIDs given to this run."""
        return [str(call_sid) for call_sid in (params or {})["call_sids"]]

    StartCallRecordingOperator.partial(
        task_id="record_call",
        recording_channels="single",
        wait_for_completion=True,
        deferrable=True,
        poll_interval=5,
        timeout=30 * 60,
    ).expand(call_sid=calls())


system_dist_deferred_waits()
