"""Review of shared polls (issue 17): each wait behaves as it did polling on its own, under the conditions a
triggerer meets (restarts past a deadline, foreign recordings in the listing, cancellations, rate limits)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from telnyx_provider.hooks.recording import RecordingHook
from telnyx_provider.triggers.recording import RecordingCompletedTrigger
from tests.sandbox.conftest import wait_for


@pytest.fixture
def sandbox(monkeypatch):
    """A sandbox ``telnyx_default`` points at; ``shared_polls`` set per test through ``use``."""
    from telnyx_provider.sandbox import Sandbox

    sb = Sandbox(port=0, processing_delay=0.1).start()
    base = json.loads(sb.airflow_conn_json())

    def use(shared: bool) -> None:
        conn = {**base, "extra": {**base["extra"], "shared_polls": shared}}
        monkeypatch.setenv("AIRFLOW_CONN_TELNYX_DEFAULT", json.dumps(conn))

    sb.use = use
    yield sb
    sb.stop()


def completed_recording(sb) -> str:
    call = sb.create_call()
    sid = RecordingHook().start_call_recording(call, play_beep=False)["sid"]
    sb.hangup(call)
    wait_for(lambda: RecordingHook().get_recording(sid)["status"] == "completed")
    return str(sid)


async def first_event(trigger: RecordingCompletedTrigger, limit: float = 30.0) -> dict:
    return (await asyncio.wait_for(trigger.run().__anext__(), limit)).payload


@pytest.mark.parametrize("shared", [False, True], ids=["own", "shared"])
@pytest.mark.parametrize("deadline_in", [-60.0, 0.3], ids=["past-on-restart", "before-first-round"])
async def test_a_wait_looks_once_at_its_deadline_before_timing_out(sandbox, shared, deadline_in):
    """A triggerer restarted after a wait's deadline (or a deadline before the poll's next round): the wait
    polling on its own looks once more at the deadline and reports a recording that completed meanwhile; a
    shared wait must too, not time out without a look."""
    sandbox.use(shared)
    sid = completed_recording(sandbox)
    trigger = RecordingCompletedTrigger(sid, poll_interval=5.0, deadline=time.time() + deadline_in)
    event = await first_event(trigger)
    assert event["status"] == "success", event
    assert event["recording"]["sid"] == sid
