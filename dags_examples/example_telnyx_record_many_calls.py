"""Record many live calls at once with dynamic task mapping, waiting on the triggerer.

One mapped ``StartCallRecordingOperator`` per call SID in the ``call_sids`` param, one deferrable
``RecordingCompletedSensor`` per recording (no worker slot is held while waiting), then a summary.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Param, dag, task

from telnyx_provider.operators.recording import StartCallRecordingOperator
from telnyx_provider.sensors.recording import RecordingCompletedSensor


def _uri(recording: dict[str, Any]) -> str:
    return str(recording["uri"])


@dag(
    dag_id="example_telnyx_record_many_calls",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    params={"call_sids": Param([], type="array", description="The live calls to record (Telnyx CallSids).")},
    # Retries, as production DAGs should have: they also recover from Airflow's reschedule/defer race
    # (apache/airflow #71172; see the README's Troubleshooting section).
    default_args={"retries": 2, "retry_delay": timedelta(seconds=10)},
    tags=["telnyx", "example"],
)
def example_telnyx_record_many_calls() -> None:
    @task
    def calls_to_record(params: dict[str, Any] | None = None) -> list[str]:
        """The call SIDs given to this run."""
        return [str(call_sid) for call_sid in (params or {})["call_sids"]]

    # [START howto_mapped_waits]
    starts = StartCallRecordingOperator.partial(
        task_id="start_recording", recording_channels="single"
    ).expand(call_sid=calls_to_record())
    waits = RecordingCompletedSensor.partial(
        task_id="wait_for_recording", deferrable=True, poke_interval=2, timeout=15 * 60
    ).expand(recording_uri=starts.output.map(_uri))
    # [END howto_mapped_waits]

    @task
    def summarize(recordings: list[dict[str, Any]]) -> dict[str, Any]:
        """Count the finished recordings and their total duration."""
        finished = list(recordings)
        return {"recordings": len(finished), "total_seconds": sum(r["duration"] for r in finished)}

    summarize(waits.output)  # type: ignore[arg-type]


example_telnyx_record_many_calls()
