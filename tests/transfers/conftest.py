"""Fixtures for the transfer tests: a sandbox with three past days of recordings to archive."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.transfers.archive_world import MEDIA_CAP

if TYPE_CHECKING:
    from collections.abc import Iterator

    from telnyx_provider.sandbox import Sandbox


@pytest.fixture
def history(monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    """A sandbox (``telnyx_default`` points at it) whose account recorded over the last three days: 10 a
    day from every source, a fifth of the calls silent (``absent``), the last day's two latest not final."""
    from telnyx_provider.sandbox import Sandbox

    with Sandbox(port=0, processing_delay=0.1, media_seconds_cap=MEDIA_CAP, seed=18) as sandbox:
        monkeypatch.setenv("AIRFLOW_CONN_TELNYX_DEFAULT", sandbox.airflow_conn_json())
        sandbox.seed_history(3, per_day=10, absent_rate=0.2, not_final=2, seed=18)
        yield sandbox
