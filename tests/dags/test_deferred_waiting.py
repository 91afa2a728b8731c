"""Deferrable and reschedule waiting under ``dag.test()`` (Airflow runs triggers inline) on the sandbox."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import pytest

from tests.dags.test_example_dags import dag_from_folder, task_states

if TYPE_CHECKING:
    from telnyx_provider.sandbox import Sandbox


def test_operator_waits_on_the_triggerer(airflow_db, sandbox_for_dags):
    call_sid = sandbox_for_dags.create_call()
    run = dag_from_folder("test_telnyx_operator_deferred_wait").test(run_conf={"call_sid": call_sid})
    assert str(run.state) == "success", task_states(run)
    stats = sandbox_for_dags.stats()
    assert stats["starts_per_call"] == {call_sid: 1}
    (sid,) = stats["completed_at"]
    assert stats["gets_per_recording"][sid] >= 1


def _hang_up_after_first_look(sandbox: Sandbox, call_sid: str) -> threading.Thread:
    """Play the caller: hang up once the sensor has looked at the recording (so it must wait for it)."""

    def watch() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not sandbox.stats()["gets_per_recording"]:
            time.sleep(0.05)
        sandbox.hangup(call_sid)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("dag_id", ["test_telnyx_sensor_deferred", "test_telnyx_sensor_reschedule"])
@pytest.mark.parametrize("sandbox_for_dags", [None], indirect=True)  # only the hang-up ends the recording
def test_sensor_waits_deferred_and_rescheduled(airflow_db, sandbox_for_dags, dag_id):
    call_sid = sandbox_for_dags.create_call()
    watcher = _hang_up_after_first_look(sandbox_for_dags, call_sid)
    run = dag_from_folder(dag_id).test(run_conf={"call_sid": call_sid})
    watcher.join(timeout=5)
    assert task_states(run) == {"record": "success", "wait": "success"}
    (sid,) = sandbox_for_dags.stats()["completed_at"]
    assert sandbox_for_dags.stats()["gets_per_recording"][sid] >= 2  # in-progress first, then completed


@pytest.mark.parametrize("sandbox_for_dags", [None], indirect=True)  # recordings never end by themselves
def test_deferred_wait_timeout_stops_the_recording(airflow_db, sandbox_for_dags):
    call_sid = sandbox_for_dags.create_call()  # never hangs up: only the timeout ends the wait
    run = dag_from_folder("test_telnyx_operator_deferred_timeout").test(run_conf={"call_sid": call_sid})
    assert task_states(run) == {"record": "failed"}
    stats = sandbox_for_dags.stats()
    assert stats["requests_by_route"]["POST /Calls/{call_sid}/Recordings/{sid}"] == 1  # Status=stopped
    assert stats["starts_per_call"] == {call_sid: 1}


# --- review of issue 16: a SIGTERM to a task waiting in poke mode (a worker shutting down, an evicted pod)
# made Airflow's task runner call on_kill, which stopped the recording although the task went on (and its
# retry would have resumed the recording); on_kill now asks Airflow for the task's state first ------------
@pytest.mark.parametrize("sandbox_for_dags", [None], indirect=True)  # only the hang-up ends the recording
def test_a_sigterm_to_a_poke_mode_wait_whose_task_goes_on_leaves_the_recording(
    airflow_db, sandbox_for_dags, capsys
):
    import os
    import signal

    sandbox = sandbox_for_dags
    call_sid = sandbox.create_call()

    def looks() -> int:
        return sum(sandbox.stats()["gets_per_recording"].values())

    def worker_shutdown() -> None:
        """SIGTERM the task (Airflow's task runner handles it in the task's main thread), then hang up."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not looks():
            time.sleep(0.05)
        before = looks()
        os.kill(os.getpid(), signal.SIGTERM)
        # The handler holds the task's main thread: two more looks mean it returned and the wait went on.
        while time.monotonic() < deadline and looks() < before + 2:
            time.sleep(0.05)
        sandbox.hangup(call_sid)

    previous = signal.signal(signal.SIGTERM, lambda *_: None)  # a SIGTERM before the task runs is harmless
    try:
        watcher = threading.Thread(target=worker_shutdown, daemon=True)
        watcher.start()
        run = dag_from_folder("test_telnyx_operator_poke_wait").test(run_conf={"call_sid": call_sid})
        watcher.join(timeout=10)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert task_states(run) == {"record": "success"}
    stats = sandbox.stats()
    assert stats["requests_by_route"].get("POST /Calls/{call_sid}/Recordings/{sid}", 0) == 0  # no stop
    assert len(stats["completed_at"]) == 1  # the hang-up ended it, whole
    assert "its task is running" in capsys.readouterr().out  # on_kill ran, asked, and left it
