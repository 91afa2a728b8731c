"""The API server's listener stops a deferred wait's recording when a user marks its task (issue 16).

The task instance is what Airflow's API server hands the hook: it names its trigger (a real ``Trigger`` row
object, built from the trigger as Airflow stores it, kwargs encrypted); the stop goes over real HTTP to the
sandbox. The listener is found by Airflow's plugin machinery through the provider's plugin.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from telnyx_provider.hooks.recording import RecordingHook
from telnyx_provider.plugins import kill_listener
from telnyx_provider.triggers.recording import RecordingCompletedTrigger


def deferred_task(trigger: RecordingCompletedTrigger | None, **fields: Any) -> SimpleNamespace:
    """A task instance as the API server holds it: deferred on ``trigger`` (a stored ``Trigger`` row)."""
    from airflow.models.trigger import Trigger

    row = None if trigger is None else Trigger.from_object(trigger)
    return SimpleNamespace(trigger_id=None if row is None else 7, trigger=row, **fields)


def test_marking_a_deferred_wait_failed_stops_its_recording_once(sandbox):
    call_sid = sandbox.create_call()
    sid = RecordingHook().start_call_recording(call_sid)["sid"]
    ti = deferred_task(RecordingCompletedTrigger(sid, call_sid=call_sid, stop_on_kill=True))
    kill_listener.on_task_instance_failed(previous_state=None, task_instance=ti, error="marked")
    assert sandbox.stats()["updates_per_recording"] == {sid: 1}
    assert RecordingHook().get_recording(sid)["status"] in ("stopped", "completed")


def test_marking_it_succeeded_stops_it_too(sandbox):
    call_sid = sandbox.create_call()
    sid = RecordingHook().start_call_recording(call_sid)["sid"]
    ti = deferred_task(RecordingCompletedTrigger(sid, call_sid=call_sid, stop_on_kill=True))
    kill_listener.on_task_instance_success(previous_state=None, task_instance=ti)
    assert sandbox.stats()["updates_per_recording"] == {sid: 1}


def test_a_sensors_wait_and_tasks_without_a_trigger_are_left_alone(sandbox):
    call_sid = sandbox.create_call()
    sid = RecordingHook().start_call_recording(call_sid)["sid"]
    sensor = deferred_task(RecordingCompletedTrigger(sid, call_sid=call_sid, stop_on_kill=False))
    running = deferred_task(None)
    runtime = SimpleNamespace(task_id="t")  # a worker's runtime task instance: no trigger at all
    for ti in (sensor, running, runtime):
        kill_listener.on_task_instance_failed(previous_state=None, task_instance=ti, error="marked")
    assert sandbox.stats()["updates_per_recording"] == {}


def test_a_failed_stop_is_logged_never_raised(sandbox, caplog):
    call_sid = sandbox.create_call()
    sid = RecordingHook().start_call_recording(call_sid)["sid"]
    sandbox.set_faults(1.0, ["503"])
    ti = deferred_task(RecordingCompletedTrigger(sid, call_sid=call_sid, stop_on_kill=True))
    kill_listener.on_task_instance_failed(previous_state=None, task_instance=ti, error="marked")
    assert any("Could not stop recording" in r.getMessage() for r in caplog.records)


def test_airflow_registers_the_listener_from_the_provider_plugin():
    from airflow.listeners.listener import get_listener_manager

    # 3.2+ caches the manager (functools.cache): build it afresh; 3.1 keeps a singleton built on first use.
    reset = getattr(get_listener_manager, "cache_clear", lambda: None)
    reset()
    try:
        manager = get_listener_manager()
        assert kill_listener in manager.pm.get_plugins()
    finally:
        reset()
