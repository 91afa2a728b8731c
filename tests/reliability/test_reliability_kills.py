"""A cancelled deferred wait stops its recording only when its task ended (issue 16, Airflow 3.3).

Airflow 3.3's triggerer calls ``on_kill`` for every trigger it no longer holds: a user's mark-failed, but also
a trigger moved to the other triggerer (stale heartbeat) and the copy of a trigger that fired elsewhere. The
wait asks Airflow for its task's state (``RuntimeTaskInstance.get_task_states``, answered here as Airflow's
execution API shapes it) and the sandbox counts the stops it receives.
"""

from __future__ import annotations

import asyncio
import contextlib
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


# --- review of issue 16: the same decisions through Airflow's own TriggerRunner.run_trigger (3.3), which
# tells a user's action (cancel message "__airflow_user_action__": on_kill) from a shutdown (a bare cancel:
# no on_kill), and cancels the trigger's task again at every exchange with its supervisor -----------------
class AirflowRunner:
    """One trigger run by Airflow 3.3's ``TriggerRunner.run_trigger``, cancelled as its triggerer does."""

    def __init__(self, trigger: RecordingCompletedTrigger) -> None:
        from airflow.jobs import triggerer_job_runner as module

        if not hasattr(module, "_USER_ACTION_CANCEL_MSG"):
            pytest.skip("Airflow before 3.3 never calls a trigger's on_kill")
        self.user_action = module._USER_ACTION_CANCEL_MSG
        self.runner = module.TriggerRunner()
        self.runner.triggers[1] = {"task": None, "is_watcher": False, "name": "wait", "events": 0}
        self.task = asyncio.ensure_future(self.runner.run_trigger(1, trigger, None, None))
        self.runner.triggers[1]["task"] = self.task

    async def cancel(self, *, user_action: bool, again_every: float | None = None) -> None:
        """Cancel as ``cancel_triggers`` does (user action) or as a shutdown does; optionally cancel the task
        again every ``again_every`` seconds until it is done, as Airflow 3.3.2 does at each supervisor
        exchange while the trigger is listed to cancel."""
        self.task.cancel(self.user_action if user_action else None)
        while again_every is not None and not self.task.done():
            await asyncio.sleep(again_every)
            self.task.cancel(self.user_action)
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


def attached(trigger: RecordingCompletedTrigger) -> RecordingCompletedTrigger:
    """The task instance as Airflow 3.3's triggerer attaches it: its ``TaskInstanceDTO``."""
    import uuid

    workloads = pytest.importorskip(
        "airflow.executors.workloads.task", reason="Airflow before 3.3 never calls a trigger's on_kill"
    )
    TaskInstanceDTO = workloads.TaskInstanceDTO

    ti = trigger.task_instance
    trigger.task_instance = TaskInstanceDTO(  # type: ignore[assignment]
        id=uuid.uuid4(), dag_version_id=uuid.uuid4(), dag_id=ti.dag_id, task_id=ti.task_id,
        run_id=ti.run_id, map_index=ti.map_index, try_number=1, pool_slots=1, priority_weight=1,
    )  # fmt: skip
    return trigger


async def _running(sandbox) -> None:
    await asyncio.sleep(0.2)  # run() is in its first pause; nothing to await from the sandbox yet


async def test_a_triggerer_shutdown_leaves_the_recording_and_asks_nothing(sandbox, task_states):
    trigger, sid = owning_wait(sandbox)
    airflow = AirflowRunner(attached(trigger))
    await _running(sandbox)
    await airflow.cancel(user_action=False)
    assert task_states["queries"] == []  # on_kill was not called
    assert STOP not in sandbox.stats()["requests_by_route"]
    assert RecordingHook().get_recording(sid)["status"] == "in-progress"


async def test_a_reassigned_wait_cancelled_on_the_user_action_path_leaves_the_recording(sandbox, task_states):
    task_states["state"] = "deferred"  # the other triggerer holds the wait now
    trigger, sid = owning_wait(sandbox)
    airflow = AirflowRunner(attached(trigger))
    await _running(sandbox)
    await airflow.cancel(user_action=True, again_every=0.05)
    await asyncio.sleep(0)
    from telnyx_provider.triggers import recording_kill

    await asyncio.gather(*recording_kill._RUNNING)  # the shielded decision, wherever it got to
    assert len(task_states["queries"]) == 1
    assert STOP not in sandbox.stats()["requests_by_route"]
    assert RecordingHook().get_recording(sid)["status"] == "in-progress"


async def test_a_user_mark_through_airflows_runner_stops_once_despite_repeated_cancels(
    sandbox, task_states, monkeypatch
):
    import time as clock

    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    answer = RuntimeTaskInstance.get_task_states

    def slow(*args: Any, **kwargs: Any) -> dict[str, Any]:
        clock.sleep(0.3)  # a busy supervisor: several more cancels land while on_kill awaits this
        return answer(*args, **kwargs)

    monkeypatch.setattr(RuntimeTaskInstance, "get_task_states", staticmethod(slow))
    trigger, sid = owning_wait(sandbox)
    airflow = AirflowRunner(attached(trigger))
    await _running(sandbox)
    await airflow.cancel(user_action=True, again_every=0.05)
    from telnyx_provider.triggers import recording_kill

    await asyncio.gather(*recording_kill._RUNNING)
    assert sandbox.stats()["updates_per_recording"] == {sid: 1}
    assert RecordingHook().get_recording(sid)["status"] in ("stopped", "completed")


async def test_a_wait_whose_dag_run_was_deleted_leaves_the_recording(sandbox, monkeypatch, caplog):
    """Airflow answers the state query of a deleted run (or task instance) with no entry at all."""
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    monkeypatch.setattr(RuntimeTaskInstance, "get_task_states", staticmethod(lambda **_: {}))
    trigger, sid = owning_wait(sandbox)
    await cancelled(trigger)
    assert STOP not in sandbox.stats()["requests_by_route"]
    assert RecordingHook().get_recording(sid)["status"] == "in-progress"
    assert any("could not be read" in r.getMessage() for r in caplog.records)
