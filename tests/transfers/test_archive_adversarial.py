"""An adversarial review of the archive and retention operators (issue 18): the world attacks each guarantee.

Each test reproduces one way the real world could break "compliance-grade copies" or "nothing lost, nothing
twice" (a store that truncates, two runs of one interval at once, a manifest that lies, retries that
multiply...), against the sandbox over real HTTP and stores that copy what they store; or shows a guarantee
that held when attacked.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from telnyx_provider.errors import TelnyxApiError
from telnyx_provider.transfers.recording import RecordingsRetentionOperator
from tests.transfers.archive_world import (
    finals_of,
    route,
)


def stored(url: str) -> Path:
    assert url.startswith("file://")
    return Path(url.removeprefix("file://"))


def manifest_of(url: str, conn_id: str | None = None) -> dict:
    from airflow.sdk import ObjectStoragePath

    return json.loads(ObjectStoragePath(url, conn_id=conn_id).read_bytes())


def retention(**kwargs) -> RecordingsRetentionOperator:
    kwargs.setdefault("task_id", "retention")
    kwargs.setdefault("keep_for", "PT1H")
    return RecordingsRetentionOperator(**kwargs)


# -- retries ------------------------------------------------------------------------------------------------


def test_a_copy_that_keeps_failing_costs_one_retry_policy_not_two_nested(history, tmp_path):
    """The download's retry loop wrapped the fetch's own: max_retries=3 made 16 fetches of a recording whose
    fetch kept failing, not 4 (and 16 times the backoff)."""
    from telnyx_provider.hooks.recording import RecordingHook

    sid = sorted(finals_of(history, 2))[0]
    hook = RecordingHook(max_retries=3, retry_max_wait=0.01, retry_budget=60)
    history.inject("GET /Recordings/{sid}", "500", count=100)
    before = route(history, "GET /Recordings/{sid}")

    with pytest.raises(TelnyxApiError, match="500"):
        hook.download_recording(sid, f"{tmp_path}/")

    assert route(history, "GET /Recordings/{sid}") - before == 4  # the first try and 3 retries
    assert not list(tmp_path.iterdir())
