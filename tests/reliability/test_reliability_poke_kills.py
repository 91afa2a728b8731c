"""A poke-mode start task that is killed stops its recording only when its task ended (review of issue 16).

Airflow's task supervisor sends the task SIGTERM, and the task runner calls ``on_kill``, whenever the server
says the task instance should not run any more or the supervisor itself is told to stop: a user marked it
failed or succeeded, but also a user cleared it (``restarting``: the next try resumes the same recording),
the scheduler failed a try whose heartbeats it missed (``up_for_retry``), the API server was unreachable for
``[workers] max_failed_heartbeats`` heartbeats, or the worker was shut down (Celery warm shutdown, a pod
evicted). Stopping the recording in those cases cut the call's audio short although the next try resumed the
recording. Like the deferred wait's ``on_kill``, the operator asks Airflow for its task's state and stops only
when the task ended. Real HTTP against the sandbox; Airflow's answer to the state query is
``RuntimeTaskInstance.get_task_states`` as the execution API shapes it (the ``task_states`` fixture).
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

import pytest

from telnyx_provider.hooks.recording import RecordingHook
from telnyx_provider.operators.start_memory import STATE_KEY
from telnyx_provider.waiting import task_timeout_error
from tests.reliability.test_reliability_kills import RUN_ID
from tests.reliability.test_reliability_start_retries import (
    DictStore,
    FakeTI,
    _swallow,
    operator,
    wait_for,
)

STOP = "POST /Calls/{call_sid}/Recordings/{sid}"


class RunningTI(FakeTI):
    """The task instance Airflow's task runner puts in the context: it names its task."""

    dag_id = "calls"
    task_id = "record"
    run_id = RUN_ID

    def __init__(self, map_index: int = -1) -> None:
        super().__init__()
        self.map_index = map_index


@pytest.fixture
def waiting(sandbox):
    """A poke-mode operator waiting for the recording it started (on a worker thread), and its context.

    At the end the call hangs up, so the wait ends however the test went.
    """
    calls, threads = [], []

    def start():
        call = sandbox.create_call()
        op = operator(call_sid=call, wait_for_completion=True, poll_interval=0.1)
        ctx = {"ti": RunningTI(), "task_state_store": DictStore()}
        thread = threading.Thread(target=_swallow, args=(op.execute, ctx), daemon=True)
        thread.start()
        calls.append(call)
        threads.append(thread)
        wait_for(lambda: sandbox.stats()["gets_per_recording"])  # it is waiting
        return op, ctx

    yield start
    for call in calls:
        sandbox.hangup(call)
    for thread in threads:
        thread.join(20)


def logged(caplog, capsys) -> list[str]:
    """The lines logged: through ``logging`` and through the task log (Airflow's structlog, to stdout)."""
    return [r.getMessage() for r in caplog.records] + capsys.readouterr().out.splitlines()


def stops(sandbox) -> int:
    return int(sandbox.stats()["requests_by_route"].get(STOP, 0))


@pytest.mark.parametrize(
    ("state", "why"),
    [
        ("up_for_retry", "its task is up_for_retry"),  # heartbeats missed: the retry resumes the recording
        ("restarting", "its task is restarting"),  # a user cleared it while it ran
        ("running", "its task is running"),  # the worker shut down, or the API server was unreachable
        (None, "its task was cleared"),
    ],
)
def test_a_kill_whose_task_goes_on_leaves_the_recording_running(
    sandbox, waiting, task_states, caplog, capsys, state, why
):
    caplog.set_level(logging.INFO, logger="telnyx_provider")
    task_states["state"] = state
    op, ctx = waiting()
    op.on_kill()
    sid = ctx["ti"].pushed["recording_sid"]
    assert stops(sandbox) == 0
    assert RecordingHook().get_recording(sid)["status"] == "in-progress"
    assert any(why in line and "left running" in line for line in logged(caplog, capsys))
    assert task_states["queries"] == [{"dag_id": "calls", "map_index": -1, "task_ids": ["record"]}]
    assert ctx["task_state_store"].values[STATE_KEY].get("stopped_by") is None


@pytest.mark.parametrize("state", ["failed", "success"])
def test_a_kill_whose_task_ended_stops_the_recording_once(sandbox, waiting, task_states, state):
    task_states["state"] = state
    op, ctx = waiting()
    op.on_kill()
    sid = ctx["ti"].pushed["recording_sid"]
    assert sandbox.stats()["updates_per_recording"] == {sid: 1}
    assert RecordingHook().get_recording(sid)["status"] in ("stopped", "completed")
    assert ctx["task_state_store"].values[STATE_KEY]["stopped_by"] == "kill"


def test_an_unreadable_task_state_leaves_the_recording_running(sandbox, waiting, task_states, caplog, capsys):
    task_states["error"] = ConnectionError("the API server is unreachable")
    op, _ctx = waiting()
    op.on_kill()
    assert stops(sandbox) == 0
    assert any("could not be read" in line for line in logged(caplog, capsys))


def test_a_state_query_that_never_answers_does_not_hold_the_kill(sandbox, waiting, task_states, monkeypatch):
    """The SIGTERM handler runs on the task's main thread, which may hold the supervisor channel's lock."""
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    held = threading.Event()
    monkeypatch.setattr(RuntimeTaskInstance, "get_task_states", staticmethod(lambda **_: held.wait(30)))
    op, _ctx = waiting()
    killing = threading.Thread(target=op.on_kill, daemon=True)
    killing.start()
    killing.join(15)  # well past the lookup's own bound, well before the 30 s the query is held
    held.set()
    assert not killing.is_alive(), "on_kill waited for a state query that never answered"
    assert stops(sandbox) == 0


def test_execution_timeout_in_poke_mode_still_stops_the_recording(sandbox, task_states, capsys, monkeypatch):
    """Airflow raises its timeout inside ``execute`` and then calls ``on_kill``; the task is still running."""
    _supervisor_hears_the_timeout(monkeypatch)
    task_states["state"] = "running"
    call = sandbox.create_call()  # never hangs up
    op = operator(
        call_sid=call, wait_for_completion=True, poll_interval=0.1, execution_timeout=timedelta(seconds=1)
    )
    ctx = {"ti": RunningTI(), "task_state_store": DictStore()}
    with pytest.raises(task_timeout_error()):
        _run_as_airflow_does(op, ctx)
    sid = ctx["ti"].pushed["recording_sid"]
    assert sandbox.stats()["updates_per_recording"] == {sid: 1}
    assert RecordingHook().get_recording(sid)["status"] in ("stopped", "completed")
    assert "execution_timeout" in capsys.readouterr().out


class _SupervisorComms:
    """What the task runner tells its supervisor: Airflow 3.4 arms an outside deadline
    (``SetExecutionTimeout``) before running ``execute`` under the same in-process timeout."""

    def __init__(self) -> None:
        self.sent: list[object] = []

    def send(self, msg: object) -> None:
        self.sent.append(msg)


def _supervisor_hears_the_timeout(monkeypatch) -> None:
    """Outside a task process no supervisor is connected; Airflow 3.4's runner still tells it the timeout."""
    try:
        from airflow.sdk.execution_time import task_runner
    except ImportError:
        return
    if getattr(task_runner, "SUPERVISOR_COMMS", None) is None:
        monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", _SupervisorComms(), raising=False)


def _run_as_airflow_does(op, ctx) -> None:
    """``execute`` under ``execution_timeout``, then ``on_kill`` on the timeout: Airflow's task runner."""
    try:  # Airflow 3.3
        from airflow.sdk.execution_time.task_runner import _run_execute_callable
    except ImportError:  # Airflow 3.1/3.2: the same three steps, inline in _execute_task
        from airflow.sdk.execution_time.timeout import timeout

        try:
            with timeout(int(op.execution_timeout.total_seconds())):
                op.execute(context=ctx)
        except task_timeout_error():
            op.on_kill()
            raise
        return
    _run_execute_callable(ctx, op.execute, op)
