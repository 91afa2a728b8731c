"""``execution_timeout`` while deferred (issue 16): the operator and the sensor carry it into the trigger.

Airflow 3.3 does not apply a task's ``execution_timeout`` to a deferred task. The wait's deadline is the
earlier of its own ``timeout`` and the ``execution_timeout``; when that deadline ends it, the operator stops
the recording it started and the sensor leaves it alone, both failing with Airflow's own task timeout and
saying why. Real HTTP against the sandbox; the trigger runs as the triggerer rebuilds it.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from telnyx_provider.hooks.recording import RecordingHook
from telnyx_provider.operators.recording import StartCallRecordingOperator
from telnyx_provider.sensors.recording import RecordingCompletedSensor
from telnyx_provider.waiting import task_timeout_error
from tests.reliability.test_reliability_waits import first_event, rebuilt, started_recording

try:  # Airflow 3.2+
    from airflow.sdk.exceptions import TaskDeferred
except ImportError:  # pragma: no cover - Airflow 3.1
    from airflow.exceptions import TaskDeferred

EXECUTION_TIMEOUT = timedelta(seconds=1.5)


def test_the_operator_carries_execution_timeout_into_its_deadline(sandbox):
    call_sid = sandbox.create_call()
    op = StartCallRecordingOperator(
        task_id="record", call_sid=call_sid, wait_for_completion=True, deferrable=True, timeout=3600,
        execution_timeout=EXECUTION_TIMEOUT,
    )  # fmt: skip
    began = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context={})
    trigger = deferred.value.trigger
    assert began < trigger.deadline <= time.time() + EXECUTION_TIMEOUT.total_seconds()
    assert deferred.value.kwargs["timed_out_by"] == "execution_timeout"
    # Airflow's own deferral timeout comes after the trigger's deadline, so the trigger's fires first.
    assert deferred.value.timeout > EXECUTION_TIMEOUT


def test_the_own_timeout_stays_when_it_is_earlier(sandbox):
    op = StartCallRecordingOperator(
        task_id="record", call_sid=sandbox.create_call(), wait_for_completion=True, deferrable=True,
        timeout=1, execution_timeout=timedelta(hours=1),
    )  # fmt: skip
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context={})
    assert deferred.value.kwargs["timed_out_by"] is None
    assert deferred.value.trigger.deadline <= time.time() + 1


async def test_the_operator_stops_its_recording_at_execution_timeout(sandbox, capsys):
    call_sid = sandbox.create_call()  # never hangs up
    op = StartCallRecordingOperator(
        task_id="record", call_sid=call_sid, wait_for_completion=True, deferrable=True, poll_interval=0.2,
        execution_timeout=EXECUTION_TIMEOUT,
    )  # fmt: skip
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context={})
    event = await first_event(rebuilt(deferred.value.trigger))
    assert event["status"] == "timeout"
    with pytest.raises(task_timeout_error(), match="execution_timeout"):
        op.execute_complete({}, event, **deferred.value.kwargs)
    sid = event["recording_sid"]
    assert sandbox.stats()["updates_per_recording"] == {sid: 1}
    assert RecordingHook().get_recording(sid)["status"] in ("stopped", "completed")
    logged = capsys.readouterr().out  # the task's log (Airflow's structlog)
    assert f"Stopped recording {sid} on call {call_sid} because the task's execution_timeout" in logged


async def test_the_sensor_leaves_the_recording_alone_at_execution_timeout(sandbox, capsys):
    _call_sid, sid = started_recording(sandbox)
    sensor = RecordingCompletedSensor(
        task_id="wait", recording_sid=sid, deferrable=True, poke_interval=0.2, timeout=3600,
        execution_timeout=EXECUTION_TIMEOUT,
    )  # fmt: skip
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context={})
    assert deferred.value.kwargs == {"timed_out_by": "execution_timeout"}
    event = await first_event(rebuilt(deferred.value.trigger))
    with pytest.raises(task_timeout_error(), match="execution_timeout"):
        sensor.execute_complete({}, event, **deferred.value.kwargs)
    assert sandbox.stats()["updates_per_recording"] == {}
    assert RecordingHook().get_recording(sid)["status"] == "in-progress"
    logged = capsys.readouterr().out
    assert (
        f"Recording {sid} is left running (this sensor did not start it): the task's execution_timeout"
        in logged
    )


# --- review of issue 16: the deadline counted from the start of the wait, after the start request (or the
# sensor's first look) had already used part of execution_timeout; a slow start (Telnyx answering in 1 s here,
# a retry budget in an outage) pushed the deadline past the task's declared timeout by that much ----------
def test_the_operators_deadline_counts_from_the_start_of_the_task(sandbox):
    call_sid = sandbox.create_call()
    sandbox.inject("POST /Calls/{call_sid}/Recordings", "slow")  # the start's reply takes a second
    op = StartCallRecordingOperator(
        task_id="record", call_sid=call_sid, wait_for_completion=True, deferrable=True, timeout=3600,
        execution_timeout=EXECUTION_TIMEOUT,
    )  # fmt: skip
    began = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context={})
    assert sandbox.stats()["faults_injected"]["slow"] == 1
    # execute began a moment after `began`; the slow reply alone took a second
    assert deferred.value.trigger.deadline <= began + EXECUTION_TIMEOUT.total_seconds() + 0.1


def test_the_sensors_deadline_counts_from_the_start_of_the_task(sandbox):
    _call_sid, sid = started_recording(sandbox)
    sandbox.inject("GET /Recordings/{sid}", "slow")  # the sensor's first look takes a second
    sensor = RecordingCompletedSensor(
        task_id="wait", recording_sid=sid, deferrable=True, poke_interval=0.2, timeout=3600,
        execution_timeout=EXECUTION_TIMEOUT,
    )  # fmt: skip
    began = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context={})
    # execute began a moment after `began`; the slow reply alone took a second
    assert deferred.value.trigger.deadline <= began + EXECUTION_TIMEOUT.total_seconds() + 0.1
