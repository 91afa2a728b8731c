"""Record one live call with Telnyx, wait for the finished recording, and store its audio.

The whole path: start recording, wait on the triggerer (deferrable sensor), then store the audio under the
folder given as the ``destination`` param (an ``ObjectStoragePath`` URL: ``file:///...``, ``s3://...``,
``gs://...``, with ``dest_conn_id`` for credentials). The storage task has an Asset outlet: each stored
recording is an asset event whose extra is what was stored, and ``example_telnyx_recording_arrived`` runs
on it.

Trigger it with the call to record, e.g. ``airflow dags test example_telnyx_call_recording -c
'{"call_sid": "v3:...", "destination": "file:///tmp/telnyx-recordings/"}'``. The ``telnyx_default``
connection holds the API key (password), the account SID (login) and the base URL (host); point it at the
local sandbox to try this without a Telnyx account.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Asset, Param, dag

from telnyx_provider.operators.recording import StartCallRecordingOperator
from telnyx_provider.sensors.recording import RecordingCompletedSensor
from telnyx_provider.transfers.recording import RecordingToStorageOperator

# [START howto_asset_outlet]
#: Stored call recordings; example_telnyx_recording_arrived is scheduled on it.
CALL_RECORDINGS = Asset(name="telnyx_call_recordings", uri="telnyx://call-recordings")
# [END howto_asset_outlet]


@dag(
    dag_id="example_telnyx_call_recording",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "call_sid": Param("", type="string", description="The live call to record (Telnyx CallSid, v3:...)."),
        "destination": Param(
            "file:///tmp/telnyx-recordings/",
            type="string",
            description="Folder (an ObjectStoragePath URL ending in /) the audio is stored under.",
        ),
    },
    # [START howto_dag_retries]
    # Retries, as production DAGs should have: they also recover from Airflow's reschedule/defer race
    # (apache/airflow #71172; see docs/troubleshooting.md).
    default_args={"retries": 2, "retry_delay": timedelta(seconds=10)},
    # [END howto_dag_retries]
    tags=["telnyx", "example"],
)
def example_telnyx_call_recording() -> None:
    # [START quickstart_tasks]
    # [START howto_operator_start]
    start = StartCallRecordingOperator(
        task_id="start_recording",
        call_sid="{{ params.call_sid }}",
        recording_channels="dual",
        recording_track="both",
        recording_status_callback_event=["in-progress", "completed", "absent"],
    )
    # [END howto_operator_start]
    # [START howto_sensor_deferrable]
    wait = RecordingCompletedSensor(
        task_id="wait_for_recording",
        recording_uri="{{ ti.xcom_pull(task_ids='start_recording')['uri'] }}",
        deferrable=True,
        poke_interval=2,
        timeout=15 * 60,
    )
    # [END howto_sensor_deferrable]
    # [START howto_transfer_store]
    store = RecordingToStorageOperator(
        task_id="store_recording",
        recording_sid="{{ ti.xcom_pull(task_ids='wait_for_recording')['sid'] }}",
        dst="{{ params.destination }}",
        outlets=[CALL_RECORDINGS],
    )
    # [END howto_transfer_store]
    start >> wait >> store
    # [END quickstart_tasks]


example_telnyx_call_recording()
