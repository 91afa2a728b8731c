"""Runs whenever a call recording was stored: reports what arrived, from the triggering asset events.

Scheduled on the asset that ``example_telnyx_call_recording``'s storage task updates. Each event's extra is
what ``RecordingToStorageOperator`` stored: ``recording_sid``, ``call_sid``, ``path``, ``size``, ``sha256``,
``content_type``, ``duration`` (no media link: a stored copy needs none).
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import Asset, dag, task

#: The same asset as in example_telnyx_call_recording (assets match by name and URI).
CALL_RECORDINGS = Asset(name="telnyx_call_recordings", uri="telnyx://call-recordings")


@dag(
    dag_id="example_telnyx_recording_arrived",
    schedule=[CALL_RECORDINGS],
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["telnyx", "example"],
)
def example_telnyx_recording_arrived() -> None:
    # [START howto_asset_consumer]
    @task
    def report_arrivals(triggering_asset_events: Any = None) -> list[dict[str, Any]]:
        """Log and return each stored recording this run was triggered by."""
        import logging

        log = logging.getLogger(__name__)
        arrived = []
        for events in (triggering_asset_events or {}).values():
            for event in events:
                stored = dict(event.extra)
                log.info(
                    "Recording %s arrived at %s: %s bytes, %s s, sha256 %s.",
                    stored.get("recording_sid"),
                    stored.get("path"),
                    stored.get("size"),
                    stored.get("duration"),
                    stored.get("sha256"),
                )
                arrived.append(stored)
        return arrived

    # [END howto_asset_consumer]

    report_arrivals()


example_telnyx_recording_arrived()
