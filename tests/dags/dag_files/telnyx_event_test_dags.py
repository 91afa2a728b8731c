"""DAGs the callback receiver tests store asset events for: scheduled on the test account's recordings."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, task

from telnyx_provider.assets import recordings_asset

#: tests.conftest.ACCOUNT_SID (DAG files cannot import the test package).
TEST_ACCOUNT_SID = "61bf923e-5e4d-4595-a110-56190ea18a1b"

with DAG(
    "telnyx_test_recordings_consumer",
    schedule=[recordings_asset(TEST_ACCOUNT_SID)],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
):

    @task
    def consume() -> None:
        """Nothing: the tests look at the queued runs and the asset events."""

    consume()
