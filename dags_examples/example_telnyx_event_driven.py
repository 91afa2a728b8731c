"""Event-driven recordings: one DAG starts recordings and ends; another runs when they finish and stores them.

No task waits for a recording: after its start request, a recording costs no further Telnyx API request per
recording. The consuming DAG is scheduled on the Asset ``telnyx://{account_sid}/recordings``, which gets an
event for every finished recording, from one of two sources (``TELNYX_EVENTS_SOURCE``):

- ``callbacks`` (default): Telnyx pushes signed status callbacks to the receiver the provider mounts on the
  API server, ``https://<airflow>/telnyx/recording-status``; the starting DAG points
  ``recording_status_callback`` there. Expose that path only (with TLS in front), and put the account's
  Ed25519 public key in the Telnyx connection's extra as ``public_key``.
- ``polling``: for deployments that cannot receive webhooks, an ``AssetWatcher`` runs
  ``RecordingsFinishedTrigger`` on the triggerer: one listing of the account per interval, whatever the number
  of recordings in progress.

Settings (read at parse time from the environment, so parsing looks nothing up): ``TELNYX_ACCOUNT_SID``,
``TELNYX_CALLBACK_URL``, ``TELNYX_RECORDINGS_DST`` (a folder URL ending in ``/``: ``file:///...``,
``s3://bucket/prefix/``...) and ``TELNYX_EVENTS_SOURCE``.
"""

from __future__ import annotations

import os
from typing import Any

import pendulum
from airflow.sdk import AssetWatcher, Param, dag, task

from telnyx_provider.assets import recording_sid_of, recording_status_of, recordings_asset
from telnyx_provider.operators.recording import StartCallRecordingOperator
from telnyx_provider.transfers.recording import RecordingToStorageOperator
from telnyx_provider.triggers.recording import RecordingsFinishedTrigger

ACCOUNT_SID = os.environ.get("TELNYX_ACCOUNT_SID", "61bf923e-5e4d-4595-a110-56190ea18a1b")
CALLBACK_URL = os.environ.get("TELNYX_CALLBACK_URL", "https://airflow.example.com/telnyx/recording-status")
RECORDINGS_DST = os.environ.get("TELNYX_RECORDINGS_DST", "file:///tmp/telnyx-recordings/")
EVENTS_SOURCE = os.environ.get("TELNYX_EVENTS_SOURCE", "callbacks")


# [START howto_event_asset]
def finished_recordings_asset(source: str) -> Any:
    """The account's recordings Asset; with ``polling``, watched by the polling event trigger."""
    if source == "polling":
        watcher = AssetWatcher(
            name="telnyx_recordings_poll",
            trigger=RecordingsFinishedTrigger(account_sid=ACCOUNT_SID, poll_interval=10),
        )
        return recordings_asset(ACCOUNT_SID, watchers=[watcher])
    return recordings_asset(ACCOUNT_SID)


# [END howto_event_asset]


@dag(
    dag_id="example_telnyx_start_recording_with_callback",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "call_sid": Param("", type="string", description="The live call to record (v3:...)."),
        "callback_url": Param(CALLBACK_URL, type="string", description="The receiver's public URL."),
    },
    tags=["telnyx", "example", "event-driven"],
)
def example_telnyx_start_recording_with_callback() -> None:
    """Start recording a call and end: the recording's end arrives as an event of the recordings Asset."""
    # [START howto_event_start_with_callback]
    StartCallRecordingOperator(
        task_id="start_recording",
        call_sid="{{ params.call_sid }}",
        # With the polling source no callback is needed.
        recording_status_callback="{{ params.callback_url }}" if EVENTS_SOURCE == "callbacks" else None,
        recording_status_callback_event=["completed", "absent"],
        # The consumer downloads by SID with a fresh link; a bearer link in the event's extra is not needed.
        send_recording_url=False,
    )
    # [END howto_event_start_with_callback]


@dag(
    dag_id="example_telnyx_store_finished_recordings",
    schedule=[finished_recordings_asset(EVENTS_SOURCE)],
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["telnyx", "example", "event-driven"],
)
def example_telnyx_store_finished_recordings() -> None:
    """Store every recording that finished: each event of the Asset is one recording, stored once.

    Several events may trigger one run (Airflow queues the events that arrive while a run is pending): the
    run maps one storing task over all of them.
    """

    # [START howto_event_consumer]
    @task
    def completed_recordings(triggering_asset_events: Any = None) -> list[str]:
        """The SIDs of the completed recordings among the events that triggered this run (``absent`` ones have
        no audio), each once: a callback delivered twice (replayed to another API server worker, retried by
        Telnyx after a lost reply) names the same recording."""
        sids: set[str] = set()
        for events in (triggering_asset_events or {}).values():
            for event in events:
                sid = recording_sid_of(event.extra)
                if sid and recording_status_of(event.extra) == "completed":
                    sids.add(sid)
        return sorted(sids)

    stored = RecordingToStorageOperator.partial(
        task_id="store_recording",
        dst=RECORDINGS_DST,
        overwrite=True,  # a recording delivered twice is stored again in the same place, not twice
    ).expand(recording_sid=completed_recordings())

    @task
    def whatever_follows(stored_recordings: list[dict[str, Any]]) -> int:
        """Runs once the recordings are stored (transcription, analytics...); here it counts them."""
        return len(list(stored_recordings))

    whatever_follows(stored.output)  # type: ignore[arg-type]
    # [END howto_event_consumer]


example_telnyx_start_recording_with_callback()
example_telnyx_store_finished_recordings()
