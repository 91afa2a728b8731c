"""Fixtures for the DAG tests: a sandbox whose recordings end by themselves."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from telnyx_provider.sandbox import Sandbox

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def sandbox_for_dags(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    """A sandbox whose recordings end by themselves 1.5 s after they start, as if the caller hung up.

    ``dag.test()`` takes a few seconds to start its first task, so a call set to hang up a fixed time after
    it was created could end before the DAG records it. Parametrize indirectly with ``None`` for recordings
    that only a hang-up or a stop ends.
    """
    seconds = getattr(request, "param", 1.5)
    with Sandbox(port=0, recording_seconds=seconds, processing_delay=0.2) as sb:
        monkeypatch.setenv("AIRFLOW_CONN_TELNYX_DEFAULT", sb.airflow_conn_json())
        yield sb
