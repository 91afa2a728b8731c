"""Record one live call with Telnyx, wait for the finished recording, and report it.

Trigger it with the call to record, e.g. ``airflow dags test example_telnyx_call_recording -c
'{"call_sid": "v3:..."}'``. The ``telnyx_default`` connection holds the API key (password), the account
SID (login) and the base URL (host); point it at the local sandbox to try this without a Telnyx account.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Param, dag, task

from telnyx_provider.operators.recording import StartCallRecordingOperator
from telnyx_provider.sensors.recording import RecordingCompletedSensor


@dag(
    dag_id="example_telnyx_call_recording",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "call_sid": Param("", type="string", description="The live call to record (Telnyx CallSid, v3:...)."),
        "poke_interval": Param(2, type="number", exclusiveMinimum=0, description="Seconds between checks."),
    },
    # Retries, as production DAGs should have: they also recover from Airflow's reschedule/defer race
    # (apache/airflow #71172; see the README's Troubleshooting section).
    default_args={"retries": 2, "retry_delay": timedelta(seconds=10)},
    tags=["telnyx", "example"],
)
def example_telnyx_call_recording() -> None:
    start = StartCallRecordingOperator(
        task_id="start_recording",
        call_sid="{{ params.call_sid }}",
        recording_channels="dual",
        recording_track="both",
        recording_status_callback_event=["in-progress", "completed", "absent"],
    )
    wait = RecordingCompletedSensor(
        task_id="wait_for_recording",
        recording_uri="{{ ti.xcom_pull(task_ids='start_recording')['uri'] }}",
        poke_interval=2,
        timeout=15 * 60,
    )

    @task
    def report(recording: dict[str, Any]) -> dict[str, Any]:
        """Log the final recording's sid, duration and media URL."""
        import logging

        logging.getLogger(__name__).info(
            "Recording %s finished: %s s, media at %s",
            recording["sid"],
            recording["duration"],
            recording.get("media_url"),
        )
        return {
            "sid": recording["sid"],
            "duration": recording["duration"],
            "media_url": recording.get("media_url"),
        }

    start >> wait
    report(wait.output)  # type: ignore[arg-type]


example_telnyx_call_recording()
