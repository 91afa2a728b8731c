"""Distributed system test: Celery workers SIGKILLed under a start, and under a wait in poke mode.

``start_recording``: the test holds the start's reply (the sandbox carried the start out), kills the worker
running the task, and checks that the retry resumes the recording the first try started.
``record_and_wait`` (run with ``poke=true``): the operator waits in the worker (``wait_for_completion``, not
deferrable); the test kills the worker mid-wait and checks that the retry resumes the same recording and
returns it once final.
``start_exact`` (run with ``exact=true``): the same kill under an exact start (issue 14): its status callback
goes to the API server's receiver (``callback_url``, on connection ``telnyx_exact``, which holds the
sandbox's public key and a ``receiver_url`` reaching the API server); the retry must adopt the recording
on the start token the killed try stored.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Param, dag, task

from telnyx_provider.operators.recording import StartCallRecordingOperator


@dag(
    dag_id="system_dist_start_retry",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "call_sid": Param("", type="string", description="The live call to record."),
        "poke": Param(False, type="boolean", description="Wait for the recording in the worker."),
        "exact": Param(False, type="boolean", description="Start in exact mode (start_exact)."),
        "callback_url": Param("", type="string", description="The receiver's recording-status URL."),
    },
    default_args={"retries": 2, "retry_delay": timedelta(seconds=2)},
    tags=["telnyx", "system-test"],
)
def system_dist_start_retry() -> None:
    @task.branch
    def which(params: dict[str, Any] | None = None) -> str:
        """The task this run exercises."""
        chosen = params or {}
        if chosen.get("poke"):
            return "record_and_wait"
        return "start_exact" if chosen.get("exact") else "start_recording"

    which() >> [
        StartCallRecordingOperator(task_id="start_recording", call_sid="{{ params.call_sid }}"),
        StartCallRecordingOperator(
            task_id="record_and_wait",
            call_sid="{{ params.call_sid }}",
            wait_for_completion=True,
            deferrable=False,
            poll_interval=2,
        ),
        StartCallRecordingOperator(
            task_id="start_exact",
            call_sid="{{ params.call_sid }}",
            telnyx_conn_id="telnyx_exact",
            recording_status_callback="{{ params.callback_url }}",
            exact_start=True,
        ),
    ]


system_dist_start_retry()
