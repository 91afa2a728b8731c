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
