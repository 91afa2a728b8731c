"""Waits in a harsher world, against the sandbox over real HTTP: outages longer than a request's retry
budget, deadlines inside an outage, kills of deferred waits, the task's retry overrides on the triggerer,
and the trigger's first look.

An outage is ``sandbox.set_faults(1.0, ["503"])`` for several times the (shortened) retry budget of one
request: the same property as a 90 s outage against the default 60 s budget, in seconds.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import threading
import time

import pendulum
import pytest

from telnyx_provider._compat import AirflowSensorTimeout, AirflowSkipException
from telnyx_provider.hooks.recording import RecordingHook
from telnyx_provider.sensors.recording import RecordingCompletedSensor
from telnyx_provider.triggers.recording import KILL_STOP_BUDGET, RecordingCompletedTrigger
from tests.sandbox.conftest import wait_for

try:  # Airflow 3.2+
    from airflow.sdk.exceptions import AirflowRescheduleException, TaskDeferred
except ImportError:  # pragma: no cover - Airflow 3.1
    from airflow.exceptions import AirflowRescheduleException, TaskDeferred

#: A request gives up after ~1 s: an outage of OUTAGE seconds outlasts several budgets.
SHORT_RETRIES = {"max_retries": 2, "retry_max_wait": 0.2, "retry_budget": 1.0}
OUTAGE = 4.0
GET_ONE = "GET /Recordings/{sid}"
STOP = "POST /Calls/{call_sid}/Recordings/{sid}"
STILL_WAITING = "within its retry budget; still waiting"


@pytest.fixture(autouse=True, params=["shared polls", "own polls"])
def polls(request, sandbox, monkeypatch):
    """Every wait here runs both ways: on the poll it shares with the triggerer's other waits (the default)
    and polling on its own (connection extra ``shared_polls`` false)."""
    if request.param == "own polls":
        conn = json.loads(os.environ["AIRFLOW_CONN_TELNYX_DEFAULT"])
        extra = conn.get("extra") or {}
        conn["extra"] = {**(json.loads(extra) if isinstance(extra, str) else extra), "shared_polls": False}
        monkeypatch.setenv("AIRFLOW_CONN_TELNYX_DEFAULT", json.dumps(conn))
    return request.param


def rebuilt(trigger: RecordingCompletedTrigger) -> RecordingCompletedTrigger:
    """The trigger as the triggerer rebuilds it from the database (JSON of ``serialize()``)."""
    classpath, kwargs = trigger.serialize()
    assert classpath == "telnyx_provider.triggers.recording.RecordingCompletedTrigger"
    return RecordingCompletedTrigger(**json.loads(json.dumps(kwargs)))


async def first_event(trigger: RecordingCompletedTrigger, limit: float = 30.0) -> dict:
    return (await asyncio.wait_for(trigger.run().__anext__(), limit)).payload


@pytest.fixture
def outage(sandbox):
    """``begin()``: every API request fails with 503 until OUTAGE seconds later (a timer lifts it)."""
    timers: list[threading.Timer] = []

    def begin() -> float:
        sandbox.set_faults(1.0, ["503"])
        timer = threading.Timer(OUTAGE, sandbox.set_faults, args=(0.0,))
        timers.append(timer)
        timer.start()
        return time.monotonic()

    yield begin
    for timer in timers:
        timer.cancel()
        timer.join(5)


def started_recording(sandbox) -> tuple[str, str]:
    call_sid = sandbox.create_call()
    return call_sid, RecordingHook().start_call_recording(call_sid)["sid"]


# -- outages longer than one request's retry budget -----------------------------------------------------


def test_poke_wait_completes_after_an_outage(sandbox, outage, capsys):
    call_sid, sid = started_recording(sandbox)
    sensor = RecordingCompletedSensor(
        task_id="wait", recording_sid=sid, poke_interval=0.1, timeout=30, deferrable=False, **SHORT_RETRIES
    )
    began = outage()
    sandbox.hangup(call_sid)  # the recording completes during the outage
    final = sensor.execute(context={})
    assert final["status"] == "completed"
    assert time.monotonic() - began >= OUTAGE  # seen only once the service answered again
    assert capsys.readouterr().out.count(STILL_WAITING) >= 2  # several looks outlasted their budget


class RescheduledTry:
    """What a rescheduled sensor asks its task instance: when the first try began."""

    def __init__(self) -> None:
        self.first: pendulum.DateTime | None = None

    def get_first_reschedule_date(self, context: object) -> pendulum.DateTime | None:
        return self.first


def test_reschedule_wait_completes_after_an_outage(sandbox, outage):
    call_sid, sid = started_recording(sandbox)
    ti = RescheduledTry()
    began = outage()
    sandbox.hangup(call_sid)
    tries = 0
    while True:
        sensor = RecordingCompletedSensor(  # each try runs a fresh copy of the task, as Airflow does
            task_id="wait",
            recording_sid=sid,
            mode="reschedule",
            poke_interval=0.1,
            timeout=30,
            **SHORT_RETRIES,
        )
        tries += 1
        try:
            final = sensor.execute(context={"ti": ti})
            break
        except AirflowRescheduleException as reschedule:
            ti.first = ti.first or pendulum.now("UTC")
            time.sleep(max(0.0, (reschedule.reschedule_date - pendulum.now("UTC")).total_seconds()))
    assert final["status"] == "completed"
    assert time.monotonic() - began >= OUTAGE
    assert tries >= 3


async def test_deferred_wait_completes_after_an_outage(sandbox, outage, caplog):
    caplog.set_level(logging.WARNING, logger="telnyx_provider")
    call_sid, sid = started_recording(sandbox)
    sensor = RecordingCompletedSensor(
        task_id="wait", recording_sid=sid, poke_interval=0.1, timeout=30, deferrable=True, **SHORT_RETRIES
    )
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context={})
    began = outage()
    sandbox.hangup(call_sid)
    event = await first_event(rebuilt(deferred.value.trigger))
    assert sensor.execute_complete({}, event)["status"] == "completed"
    assert time.monotonic() - began >= OUTAGE
    assert len([r for r in caplog.records if STILL_WAITING in r.getMessage()]) >= 2


# -- a deadline inside an outage --------------------------------------------------------------------------


def test_poke_deadline_inside_an_outage_ends_on_time(sandbox, outage):
    """The connection's own budget (60 s) would overrun: each look is capped at the time left."""
    _call_sid, sid = started_recording(sandbox)
    sensor = RecordingCompletedSensor(
        task_id="wait",
        recording_sid=sid,
        poke_interval=0.1,
        timeout=1.5,
        deferrable=False,
        retry_max_wait=0.2,
    )
    began = outage()
    with pytest.raises(AirflowSensorTimeout):
        sensor.execute(context={})
    assert time.monotonic() - began < 1.5 + 2.0  # the deadline plus at most one (quick) request


async def test_deferred_deadline_inside_an_outage_ends_on_time(sandbox, outage):
    _call_sid, sid = started_recording(sandbox)
    began = outage()
    trigger = RecordingCompletedTrigger(
        sid, poll_interval=0.1, deadline=time.time() + 1.5, retry_max_wait=0.2
    )
    event = await first_event(rebuilt(trigger), limit=10)
    assert event["status"] == "timeout"
    assert time.monotonic() - began < 1.5 + 2.0


# -- the task's retry overrides reach the triggerer -------------------------------------------------------


async def test_trigger_polls_with_the_tasks_retry_overrides(sandbox, outage, caplog):
    caplog.set_level(logging.WARNING, logger="telnyx_provider.retry")
    _call_sid, sid = started_recording(sandbox)
    outage()
    trigger = RecordingCompletedTrigger(
        sid,
        poll_interval=0.05,
        deadline=time.time() + 3.0,
        max_retries=1,
        retry_max_wait=0.01,
        retry_budget=5,
    )
    assert (await first_event(rebuilt(trigger)))["status"] == "timeout"
    retries = [
        re.search(r"retry \d+ of (\d+)", r.getMessage())
        for r in caplog.records
        if r.name == "telnyx_provider.retry" and sid in r.getMessage()
    ]
    looks = len([r for r in caplog.records if STILL_WAITING in r.getMessage()])
    assert looks >= 2
    assert {match.group(1) for match in retries if match} == {"1"}  # the task's max_retries, not 8
    # Each look: one try and at most the one retry allowed (a look near the deadline has its budget capped
    # and may have none; on a loaded machine that can be more than the last one).
    assert looks // 2 <= len(retries) <= looks
    gets = sandbox.stats()["requests_by_route"][GET_ONE]
    assert gets == looks + len(retries)


# -- kills ----------------------------------------------------------------------------------------------


async def _kill(trigger: RecordingCompletedTrigger) -> None:
    """What the triggerer does when a user marks the deferred task failed: cancel run(), then on_kill()."""
    running = asyncio.ensure_future(trigger.run().__anext__())
    await asyncio.sleep(0.2)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    await trigger.on_kill()


async def test_a_killed_deferred_wait_stops_its_recording(sandbox, caplog):
    caplog.set_level(logging.INFO, logger="telnyx_provider")
    call_sid, sid = started_recording(sandbox)
    trigger = rebuilt(  # as the operator's wait_for_completion defers it
        RecordingCompletedTrigger(sid, call_sid=call_sid, stop_on_kill=True, poll_interval=0.05)
    )
    await _kill(trigger)
    assert sandbox.stats()["requests_by_route"][STOP] == 1
    assert RecordingHook().get_recording(sid)["status"] in ("stopped", "completed")
    assert any("because its wait was killed" in r.getMessage() for r in caplog.records)


async def test_a_killed_sensor_leaves_the_recording_running(sandbox):
    _call_sid, sid = started_recording(sandbox)
    sensor = RecordingCompletedSensor(task_id="wait", recording_sid=sid, poke_interval=0.05, deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context={})
    await _kill(rebuilt(deferred.value.trigger))
    assert STOP not in sandbox.stats()["requests_by_route"]
    assert RecordingHook().get_recording(sid)["status"] == "in-progress"


async def test_on_kill_gives_up_quickly_and_never_raises(sandbox, caplog):
    call_sid, sid = started_recording(sandbox)
    sandbox.set_faults(1.0, ["503"])  # the stop cannot get through
    trigger = rebuilt(RecordingCompletedTrigger(sid, call_sid=call_sid, stop_on_kill=True, retry_budget=60))
    began = time.monotonic()
    await trigger.on_kill()
    assert time.monotonic() - began < KILL_STOP_BUDGET + 2.0  # its own short budget, not the task's 60 s
    assert sandbox.stats()["requests_by_route"][STOP] >= 2  # it did retry
    assert any("Could not stop recording" in r.getMessage() for r in caplog.records)


# -- the first look -------------------------------------------------------------------------------------


async def test_the_triggers_first_look_comes_one_interval_after_it_starts(sandbox):
    call_sid, sid = started_recording(sandbox)
    sandbox.hangup(call_sid)
    wait_for(lambda: RecordingHook().get_recording(sid)["status"] == "completed")
    before = sandbox.stats()["requests_by_route"][GET_ONE]
    began = time.monotonic()
    event = await first_event(rebuilt(RecordingCompletedTrigger(sid, poll_interval=0.5)))
    assert event["status"] == "success"
    assert time.monotonic() - began >= 0.5
    assert sandbox.stats()["requests_by_route"][GET_ONE] == before + 1


async def test_the_first_look_never_waits_past_the_deadline(sandbox):
    _call_sid, sid = started_recording(sandbox)
    began = time.monotonic()
    trigger = RecordingCompletedTrigger(sid, poll_interval=60, deadline=time.time() + 0.3)
    assert (await first_event(rebuilt(trigger), limit=5))["status"] == "timeout"
    assert time.monotonic() - began < 3.0  # not the 60 s poll interval


# -- soft_fail on a deferrable sensor's first check -----------------------------------------------------


def test_soft_fail_skips_on_the_first_deferrable_check(sandbox):
    call_sid = sandbox.create_call(silent=True)
    sid = RecordingHook().start_call_recording(call_sid)["sid"]
    sandbox.hangup(call_sid)
    wait_for(lambda: RecordingHook().get_recording(sid)["status"] == "absent")
    sensor = RecordingCompletedSensor(task_id="wait", recording_sid=sid, deferrable=True, soft_fail=True)
    with pytest.raises(AirflowSkipException):
        sensor.execute(context={})
