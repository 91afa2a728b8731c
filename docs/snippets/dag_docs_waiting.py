"""Waiting without the triggerer: a sensor in reschedule mode, and the start operator waiting in its task.

The guides include these DAGs; tests/docs/test_snippets.py runs both with ``dag.test()`` on the sandbox.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag

from telnyx_provider.operators.recording import StartCallRecordingOperator
from telnyx_provider.sensors.recording import RecordingCompletedSensor

CALL = {"call_sid": Param("", type="string", description="The live call to record (v3:...).")}
RETRIES = {"retries": 2, "retry_delay": timedelta(seconds=10)}


@dag(
    dag_id="docs_sensor_reschedule",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    params=CALL,
    default_args=RETRIES,
    tags=["telnyx", "docs"],
)
def docs_sensor_reschedule() -> None:
    start = StartCallRecordingOperator(task_id="start_recording", call_sid="{{ params.call_sid }}")
    # [START howto_sensor_reschedule]
    wait = RecordingCompletedSensor(
        task_id="wait_for_recording",
        # the key the start pushes before any wait; or recording_uri=...
        recording_sid="{{ ti.xcom_pull(task_ids='start_recording', key='recording_sid') }}",
        poke_interval=30,  # tens of seconds: each reschedule is a chance for Airflow's race
        timeout=60 * 60,
        mode="reschedule",  # poke | reschedule; or deferrable=True
        not_found_grace_period=60,  # seconds a 404 is taken as "not visible yet"
    )
    # [END howto_sensor_reschedule]
    start >> wait


@dag(
    dag_id="docs_operator_waits",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    params=CALL,
    default_args=RETRIES,
    tags=["telnyx", "docs"],
)
def docs_operator_waits() -> None:
    # [START howto_operator_wait_for_completion]
    StartCallRecordingOperator(
        task_id="record_call",
        call_sid="{{ params.call_sid }}",
        # the API's parameters, with the API's defaults:
        play_beep=True,
        recording_status_callback=None,
        recording_status_callback_event=None,  # None = API default ("completed")
        recording_status_callback_method="POST",
        recording_channels="dual",
        recording_track="both",
        send_recording_url=True,
        account_sid=None,  # default: the connection's login
        telnyx_conn_id="telnyx_default",
        max_retries=None,
        retry_max_wait=None,
        retry_budget=None,  # default: the connection's retry settings
        # return the final recording: wait in this task (poke), or on the triggerer with deferrable=True
        wait_for_completion=True,
        poll_interval=2,
        timeout=15 * 60,  # on timeout (or a kill while waiting) the recording is stopped
        deferrable=False,
    )
    # [END howto_operator_wait_for_completion]


docs_sensor_reschedule()
docs_operator_waits()
