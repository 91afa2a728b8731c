"""A cancelled deferred wait stops its recording only when its task ended (issue 16, Airflow 3.3).

Airflow 3.3's triggerer calls ``on_kill`` for every trigger it no longer holds: a user's mark-failed, but also
a trigger moved to the other triggerer (stale heartbeat) and the copy of a trigger that fired elsewhere. The
wait asks Airflow for its task's state (``RuntimeTaskInstance.get_task_states``, answered here as Airflow's
execution API shapes it) and the sandbox counts the stops it receives.
"""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import pytest

from telnyx_provider.hooks.recording import RecordingHook
from telnyx_provider.triggers.recording import RecordingCompletedTrigger
from tests.reliability.test_reliability_waits import STOP, rebuilt, started_recording
from tests.reliability.test_reliability_waits import _kill as cancelled  # what the triggerer does

RUN_ID = "manual__2026-12-04T21:41:40+00:00"


def owning_wait(sandbox: Any, map_index: int = -1) -> tuple[RecordingCompletedTrigger, str]:
    """The operator's wait on a live recording, with the task instance a triggerer attaches."""
    call_sid, sid = started_recording(sandbox)
    trigger = rebuilt(
        RecordingCompletedTrigger(sid, call_sid=call_sid, stop_on_kill=True, poll_interval=0.05)
    )
    trigger.task_instance = SimpleNamespace(  # type: ignore[assignment]
        dag_id="calls", task_id="record_call", run_id=RUN_ID, map_index=map_index, try_number=1
    )
    return trigger, sid


@pytest.mark.parametrize(
    ("state", "why"),
    [
        ("deferred", "moved to another triggerer"),
        ("scheduled", "its task is scheduled"),
        ("running", "its task is running"),
        ("up_for_retry", "its task is up_for_retry"),
        (None, "its task was cleared"),
    ],
)
async def test_a_wait_whose_task_goes_on_leaves_its_recording_running(
    sandbox, task_states, caplog, state, why
):
    caplog.set_level(logging.INFO, logger="telnyx_provider")
    task_states["state"] = state
    trigger, sid = owning_wait(sandbox)
    await cancelled(trigger)
    assert STOP not in sandbox.stats()["requests_by_route"]
    assert RecordingHook().get_recording(sid)["status"] == "in-progress"
    assert any(why in r.getMessage() and "left running" in r.getMessage() for r in caplog.records)
    assert task_states["queries"] == [{"dag_id": "calls", "map_index": -1, "task_ids": ["record_call"]}]


@pytest.mark.parametrize("state", ["failed", "success", "skipped", "upstream_failed", "removed"])
async def test_a_wait_whose_task_ended_stops_its_recording_once(sandbox, task_states, state):
    task_states["state"] = state
    trigger, sid = owning_wait(sandbox)
    await cancelled(trigger)
    assert sandbox.stats()["updates_per_recording"] == {sid: 1}
    assert RecordingHook().get_recording(sid)["status"] in ("stopped", "completed")


async def test_a_mapped_wait_reads_its_own_map_index(sandbox, task_states):
    trigger, sid = owning_wait(sandbox, map_index=7)
    await cancelled(trigger)
    assert task_states["queries"][0]["map_index"] == 7
    assert sandbox.stats()["updates_per_recording"] == {sid: 1}


async def test_a_recording_already_stopped_is_not_stopped_again(sandbox, task_states, caplog):
    caplog.set_level(logging.INFO, logger="telnyx_provider")
    trigger, sid = owning_wait(sandbox)
    RecordingHook().stop_call_recording(trigger.call_sid or "", sid)  # e.g. by the API server's listener
    await cancelled(trigger)
    assert sandbox.stats()["updates_per_recording"] == {sid: 1}
    assert any("not stopped again" in r.getMessage() for r in caplog.records)


async def test_an_unreadable_task_state_leaves_the_recording_running(sandbox, task_states, caplog):
    task_states["error"] = KeyError("the task instance is gone")
    trigger, _sid = owning_wait(sandbox)
    await cancelled(trigger)
    assert STOP not in sandbox.stats()["requests_by_route"]
    assert any("could not be read" in r.getMessage() for r in caplog.records)


async def test_a_kill_interrupted_by_airflows_repeated_cancel_still_stops(sandbox, task_states, monkeypatch):
    """Airflow 3.3.2 cancels the trigger's task again while ``on_kill`` awaits: the stop still happens."""
    import time as clock

    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    answer = RuntimeTaskInstance.get_task_states

    def slow(*args: Any, **kwargs: Any) -> dict[str, Any]:
        clock.sleep(0.5)  # the supervisor is busy: the lookup takes a while
        return answer(*args, **kwargs)

    monkeypatch.setattr(RuntimeTaskInstance, "get_task_states", staticmethod(slow))
    trigger, sid = owning_wait(sandbox)
    killing = asyncio.ensure_future(trigger.on_kill())
    await asyncio.sleep(0.1)
    killing.cancel()  # the triggerer's next cancel of the same trigger
    with pytest.raises(asyncio.CancelledError):
        await killing
    for _ in range(100):
        if sandbox.stats()["updates_per_recording"].get(sid):
            break
        await asyncio.sleep(0.05)
    assert sandbox.stats()["updates_per_recording"] == {sid: 1}
