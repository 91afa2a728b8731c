"""Archive every recording of the Telnyx account, one day at a time, then apply the retention period.

Each daily run (at midnight UTC) archives the recordings created in its data interval, the day that just
ended (``[data_interval_start, data_interval_end)`` of a ``CronDataIntervalTimetable``), from every source
(``<Record>``, ``<Dial record>``, the API, conferences, trunks...) under ``params.destination`` (an
``ObjectStoragePath`` URL: ``file:///...``, ``s3://...``, ``gs://...``; give the archive a ``dest_conn_id``
for a bucket's credentials), laid out as ``{YYYY}/{MM}/{DD}/{call_sid}/{recording_sid}.wav``, with a manifest
per day in ``_manifests/``. Then the retention task deletes from Telnyx the recordings older than
``params.keep_for`` that a manifest proves archived (their copy still there, read back with the manifest's
size and SHA-256); nothing unarchived is ever deleted.

``catchup=True`` with a start date in the past backfills the days before the DAG existed: unpause it (it is
created paused, so that happens when you decide) or run ``airflow backfill create --dag-id
example_telnyx_archive --from-date 2026-01-01 --to-date 2026-03-31``. Runs are idempotent: a day archived
again downloads nothing that is already stored with the same size and SHA-256. Recordings still in progress
when their day is archived are named in the log and the manifest, and archived by a re-run of that day
(clear the task) once final. The manifests' Asset (``telnyx_archive_manifests``) gets one event per day.

Each day is listed only ``settle`` (10 minutes) after its end, so recordings Telnyx lists a little late are in
its manifest: the archive task defers until then (a catchup run of a past day does not wait).

Settings (read at parse time from the environment, so parsing looks nothing up): ``TELNYX_ARCHIVE_START``
(the first day to archive, ISO 8601; default 2026-01-01), ``TELNYX_ARCHIVE_DST`` (the default destination),
``TELNYX_ARCHIVE_KEEP_FOR`` (the default retention period) and ``TELNYX_ARCHIVE_SETTLE`` (seconds; default
600).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

import pendulum
from airflow.sdk import Asset, Param, dag

try:
    from airflow.sdk import CronDataIntervalTimetable
except ImportError:  # Airflow 3.1
    from airflow.timetables.interval import CronDataIntervalTimetable  # type: ignore[assignment]

from telnyx_provider.transfers.recording import RecordingsArchiveOperator, RecordingsRetentionOperator

#: The first day archived (the DAG's start date: its run starts at the midnight that ends it).
FIRST_DAY = pendulum.instance(
    datetime.fromisoformat(os.environ.get("TELNYX_ARCHIVE_START", "2026-01-01")), tz="UTC"
)
DESTINATION = os.environ.get("TELNYX_ARCHIVE_DST", "file:///tmp/telnyx-archive/")
KEEP_FOR = os.environ.get("TELNYX_ARCHIVE_KEEP_FOR", "P90D")
#: Seconds after a day's end before it is listed (Telnyx's list lag and clock skew).
SETTLE = float(os.environ.get("TELNYX_ARCHIVE_SETTLE", "600"))
#: One event per archived day; its extra is the archive's result (manifest URL, counts, bytes).
ARCHIVE_MANIFESTS = Asset(name="telnyx_archive_manifests", uri="telnyx://archive-manifests")


# [START howto_archive_schedule]
@dag(
    dag_id="example_telnyx_archive",
    # Each run covers one UTC day and starts at the midnight that ends it. Not "@daily": on Airflow 3 that is
    # CronTriggerTimetable, whose runs have no data interval (and given an interval, its first catchup run
    # has no task: its logical date falls before the start date).
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=FIRST_DAY,
    catchup=True,
    # [END howto_archive_schedule]
    is_paused_upon_creation=True,  # the backfill starts when you unpause the DAG
    max_active_runs=2,
    params={
        "destination": Param(
            DESTINATION,
            type="string",
            description="The archive's prefix (an ObjectStoragePath URL): recordings and _manifests/ below.",
        ),
        "keep_for": Param(
            KEEP_FOR,
            type="string",
            description="How long Telnyx keeps a recording once archived (ISO 8601 duration: P90D, P7Y...).",
        ),
    },
    default_args={"retries": 3, "retry_delay": timedelta(minutes=1)},
    tags=["telnyx", "example"],
)
def example_telnyx_archive() -> None:
    # [START howto_archive_operators]
    archive = RecordingsArchiveOperator(
        task_id="archive_recordings",
        dst="{{ params.destination }}",
        max_active_downloads=4,
        settle=SETTLE,  # list the day 10 minutes after it ends, deferred
        deferrable=True,
        not_final="skip",
        outlets=[ARCHIVE_MANIFESTS],
    )
    retention = RecordingsRetentionOperator(
        task_id="apply_retention",
        dst="{{ params.destination }}",
        keep_for="{{ params.keep_for }}",
    )
    archive >> retention
    # [END howto_archive_operators]


example_telnyx_archive()
