"""System test: a DAG scheduled on an account's recordings Asset watched by RecordingsFinishedTrigger.

The account (a second sandbox) and its connection come from the deployment's environment; each run returns
the recording SIDs of the events that triggered it, so the test can check each finished once.
"""

from __future__ import annotations

import os
from typing import Any

import pendulum
from airflow.sdk import AssetWatcher, dag, task

from telnyx_provider.assets import recording_sid_of, recordings_asset
from telnyx_provider.triggers.recording import RecordingsFinishedTrigger

ACCOUNT_SID = os.environ.get("TELNYX_POLL_ACCOUNT_SID", "00000000-0000-4000-8000-000000000000")

watched = recordings_asset(
    ACCOUNT_SID,
    watchers=[
        AssetWatcher(
            name="system_telnyx_recordings_poll",
            trigger=RecordingsFinishedTrigger(
                account_sid=ACCOUNT_SID, telnyx_conn_id="telnyx_poll", poll_interval=2, overlap=30
            ),
        )
    ],
)


@dag(
    dag_id="system_telnyx_polled_recordings",
    schedule=[watched],
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    # Paused until the test's polling phase unpauses it: a paused DAG's watcher does not run, so it does not
    # poll (and look its connection up) while the other scenarios run.
    is_paused_upon_creation=True,
    tags=["telnyx", "system-test"],
)
def system_telnyx_polled_recordings() -> None:
    @task
    def finished(triggering_asset_events: Any = None) -> list[str]:
        """The SIDs of the events that triggered this run (duplicates kept: the test counts them)."""
        return [
            sid
            for events in (triggering_asset_events or {}).values()
            for event in events
            if (sid := recording_sid_of(event.extra))
        ]

    finished()


system_telnyx_polled_recordings()
