"""Checks on the faults: the triggerer killed and restarted, a deferred task marked failed, timeouts, and
the retries Airflow's race caused."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from tests.system.clients import wait_for

if TYPE_CHECKING:
    from pathlib import Path

    from tests.system.checks import Checks
    from tests.system.scenarios import Run, Scenario

#: Statuses of a recording that was stopped (``stopped`` while Telnyx processes it, then ``completed``).
STOPPED = {"stopped", "completed"}


#: What the scheduler logs when Airflow's race (apache/airflow #71172) fails a rescheduled or deferred task.
RACE_MESSAGE = "finished with state success, but the task instance's state attribute is"


class Races:
    """The task failures Airflow's race caused, as the scheduler logged them.

    :param scheduler_logs: the output of every scheduler of the run.
    """

    def __init__(self, scheduler_logs: list[Path]) -> None:
        self.lines = [
            line
            for log in scheduler_logs
            for line in log.read_text(errors="replace").splitlines()
            if RACE_MESSAGE in line
        ]

    def count(self, run: Run, task_id: str) -> int:
        """How often the race failed a try of the task (all map indexes together)."""
        needle = f"{run.dag_id}.{task_id} {run.run_id}"
        return sum(1 for line in self.lines if needle in line)


def states(run: Run, task_id: str) -> list[str]:
    """The states of every task instance of ``task_id`` (one per map index)."""
    return [str(ti["state"]) for ti in run.tis if ti["task_id"] == task_id]


def verify_triggerer_restart(checks: Checks, scenario: Scenario, stats: dict[str, Any]) -> None:
    """Every wait deferred at the kill completed under the new triggerer, each call recorded once."""
    restart = scenario.triggerer_restart
    if not checks.check(
        bool(restart) and len(restart["sids"]) == restart["waits"],
        "the triggerer was killed and restarted while every wait was deferred",
        restart,
    ):
        return
    checks.check(
        restart["resumed_after"] is not None,
        f"a new triggerer polled all {len(restart['sids'])} deferred recordings again "
        f"({restart['resumed_after'] or 0:.1f} s after the kill)",
        restart,
    )
    calls = [
        call for name in ("recording", "mapped", "taskflow", "deferred") for call in scenario.runs[name].calls
    ]
    recordings = {call: scenario.recordings_of(call) for call in calls}
    checks.check(
        all(len(found) == 1 and found[0]["status"] == "completed" for found in recordings.values()),
        "each of their calls has exactly one recording, completed (none twice, none lost)",
        recordings,
    )
    sids = [found[0]["sid"] for found in recordings.values() if found]
    checks.check(
        all(stats["completed_at"].get(sid) for sid in sids),
        "the sandbox saw every one of those recordings complete",
    )


def verify_marked_failed(checks: Checks, scenario: Scenario) -> None:
    """The deferred task marked failed through the REST API stays failed, and its recording is stopped."""
    run = scenario.runs["marked_failed"]
    checks.equal(states(run, "record_call"), ["failed"], "record_call is failed")
    checks.equal(run.state, "failed", "run failed")
    sid = scenario.recordings_of(run.calls[0])[0]["sid"]

    def stopped() -> dict[str, Any] | None:
        recording = scenario.sandbox.recording(sid)
        return recording if recording["status"] in STOPPED else None

    try:
        recording = wait_for(stopped, "the recording to be stopped", timeout=20)
    except TimeoutError:
        recording = scenario.sandbox.recording(sid)
    checks.check(
        recording["status"] in STOPPED,
        "its recording was stopped by the trigger's on_kill (its caller never hung up)",
        recording,
    )


def verify_timeout(checks: Checks, scenario: Scenario, races: Races) -> None:
    """Waits that time out fail with the timeout, are not retried, and stop their recordings."""
    run = scenario.runs["timeout"]
    api = scenario.api
    checks.equal(run.state, "failed", "run failed")
    for task_id, call_sid in (("deferred_wait", run.calls[0]), ("worker_wait", run.calls[1])):
        ti = run.ti(task_id)
        checks.equal(ti["state"], "failed", f"{task_id} failed")
        # A try Airflow's race failed is retried; the timeout itself never is.
        tries = 1 + races.count(run, task_id)
        checks.equal(ti["try_number"], tries, f"{task_id}: a timeout is not retried")
        log = api.task_log(run.dag_id, run.run_id, task_id, ti["try_number"])
        checks.check(
            "AirflowSensorTimeout" in log or "timed out" in log,
            f"{task_id}: the task log shows the timeout",
            log[-2000:],
        )
        checks.check("Stopped recording" in log, f"{task_id}: the task log says the recording was stopped")
        found = scenario.recordings_of(call_sid)
        deadline = time.monotonic() + 10
        while found and found[0]["status"] not in STOPPED and time.monotonic() < deadline:
            time.sleep(0.5)
            found = scenario.recordings_of(call_sid)
        checks.check(
            len(found) == 1 and found[0]["status"] in STOPPED,
            f"{task_id}: its recording was stopped although the call never hung up",
            found,
        )
    # Two timeouts, and the task marked failed: one stop request each, none repeated, none elsewhere.
    stops = scenario.sandbox.stats()["requests_by_route"].get("POST /Calls/{call_sid}/Recordings/{sid}", 0)
    checks.equal(stops, 3, "3 stop requests in all (one per stopped recording)")


def verify_retries(checks: Checks, scenario: Scenario, races: Races) -> None:
    """Report every task that needed a retry, and check each was Airflow's race, not our code.

    A retry the scheduler did not log as the race is a failure: a real regression must never hide behind
    the task retries the DAGs carry.
    """
    retried, unexplained = [], []
    for run in scenario.runs.values():
        for ti in run.tis:
            if ti["try_number"] <= 1:
                continue
            index = "" if ti["map_index"] == -1 else f"[{ti['map_index']}]"
            what = f"{run.dag_id}/{ti['task_id']}{index} ({run.name}): try {ti['try_number']}, {ti['state']}"
            count = races.count(run, ti["task_id"])
            retried.append(f"{what}; the scheduler logged the race {count} time(s) for this task")
            if count < ti["try_number"] - 1:
                unexplained.append(what)
    print(f"tasks that needed a retry: {len(retried)} (Airflow's race, apache/airflow #71172)", flush=True)
    for line in retried:
        print(f"  {line}", flush=True)
    checks.check(not unexplained, "every retry was Airflow's race, logged by the scheduler", unexplained)
