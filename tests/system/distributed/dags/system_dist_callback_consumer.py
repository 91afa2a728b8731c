"""Distributed system test: a DAG scheduled on the account's recordings Asset, fed by signed callbacks.

Each run returns the recording SIDs of the asset events that triggered it (duplicates kept: the test
counts them), so the test can check that every callback reached exactly one run.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import dag, task

from telnyx_provider.assets import recording_sid_of, recordings_asset

ACCOUNT_SID = os.environ.get("TELNYX_ACCOUNT_SID", "00000000-0000-4000-8000-000000000000")


@dag(
    dag_id="system_dist_callback_consumer",
    schedule=[recordings_asset(ACCOUNT_SID)],
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=5)},
    tags=["telnyx", "system-test"],
)
def system_dist_callback_consumer() -> None:
    @task
    def arrived(triggering_asset_events: Any = None) -> list[str]:
        """The SIDs of the events that triggered this run."""
        return [
            sid
            for events in (triggering_asset_events or {}).values()
            for event in events
            if (sid := recording_sid_of(event.extra))
        ]

    arrived()


system_dist_callback_consumer()
