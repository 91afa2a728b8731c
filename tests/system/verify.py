"""What the runs must have done: task states, XCom values, the sandbox's counters, the faults' outcomes."""

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


def _states(run: Run, task_id: str) -> list[str]:
    return [str(ti["state"]) for ti in run.tis if ti["task_id"] == task_id]


def verify_runs(checks: Checks, scenario: Scenario, *, stop_on_kill: bool, recording_keys: bool) -> None:
    """Every check on the finished runs.

    :param stop_on_kill: whether the installed provider stops a recording when a deferred wait is marked
        failed (the trigger's ``on_kill``); the check is reported as pending otherwise.
    :param recording_keys: whether the installed operator pushes ``recording_sid``/``recording_uri``.
    """
    runs, api, sandbox = scenario.runs, scenario.api, scenario.sandbox
    stats = sandbox.stats()
    starts = stats["starts_per_call"]

    poke = runs["poke"]
    print("example_telnyx_call_recording (poke-mode sensor):", flush=True)
    checks.equal(poke.state, "success", "run succeeded")
    for task_id in ("start_recording", "wait_for_recording", "report"):
        checks.equal(_states(poke, task_id), ["success"], f"{task_id} succeeded")
    checks.check(poke.was_seen("wait_for_recording", "running"), "the sensor was seen running (poking)")
    started = api.xcom(poke.dag_id, poke.run_id, "start_recording")
    checks.check(
        isinstance(started, dict) and started.get("status") == "in-progress",
        "start_recording: the started recording in XCom",
        started,
    )
    final = api.xcom(poke.dag_id, poke.run_id, "wait_for_recording")
    checks.final_recording(final, "wait_for_recording")
    report = api.xcom(poke.dag_id, poke.run_id, "report")
    checks.check(
        isinstance(report, dict)
        and isinstance(final, dict)
        and report.get("sid") == final.get("sid")
        and report.get("duration") == final.get("duration")
        and bool(report.get("media_url")),
        "report: sid, duration and media URL of the final recording",
        report,
    )
    if recording_keys and isinstance(started, dict):
        for key, field in (("recording_sid", "sid"), ("recording_uri", "uri")):
            checks.equal(
                api.xcom(poke.dag_id, poke.run_id, "start_recording", key),
                started.get(field),
                f"start_recording pushed XCom {key}",
            )

    mapped = runs["mapped"]
    print("example_telnyx_record_many_calls (mapped, deferrable sensors):", flush=True)
    checks.equal(mapped.state, "success", "run succeeded")
    for task_id in ("calls_to_record", "start_recording", "wait_for_recording", "summarize"):
        count = 1 if task_id in ("calls_to_record", "summarize") else len(mapped.calls)
        checks.equal(_states(mapped, task_id), ["success"] * count, f"{task_id}: {count} x success")
    waits = range(len(mapped.calls))
    checks.check(
        all(mapped.was_seen("wait_for_recording", "deferred", i) for i in waits),
        "every mapped sensor was seen deferred",
        mapped.seen,
    )
    finals = [api.xcom(mapped.dag_id, mapped.run_id, "wait_for_recording", map_index=i) for i in waits]
    for index, recording in enumerate(finals):
        checks.final_recording(recording, f"wait_for_recording[{index}]")
    summary = api.xcom(mapped.dag_id, mapped.run_id, "summarize")
    total = sum(r["duration"] for r in finals if isinstance(r, dict) and isinstance(r.get("duration"), int))
    checks.equal(
        summary,
        {"recordings": len(mapped.calls), "total_seconds": total},
        "summarize: count and total duration",
    )

    resched = runs["reschedule"]
    print("system_telnyx_reschedule_sensor (reschedule-mode sensor):", flush=True)
    checks.equal(resched.state, "success", "run succeeded")
    checks.check(
        resched.was_seen("wait_for_recording", "up_for_reschedule"),
        "the sensor was seen up_for_reschedule",
        resched.seen,
    )
    checks.final_recording(
        api.xcom(resched.dag_id, resched.run_id, "wait_for_recording"), "wait_for_recording"
    )

    deferred = runs["deferred"]
    print("system_telnyx_operator_deferred (wait_for_completion, deferrable):", flush=True)
    checks.equal(deferred.state, "success", "run succeeded")
    checks.check(deferred.was_seen("record_call", "deferred"), "the operator was seen deferred")
    checks.final_recording(api.xcom(deferred.dag_id, deferred.run_id, "record_call"), "record_call")

    _verify_triggerer_restart(checks, scenario, stats)
    _verify_marked_failed(checks, scenario, stop_on_kill=stop_on_kill)
    _verify_timeout(checks, scenario, stats, stop_on_kill=stop_on_kill)

    print("every call:", flush=True)
    every_call = [call for run in runs.values() for call in run.calls]
    checks.equal(
        {call: starts.get(call, 0) for call in every_call},
        dict.fromkeys(every_call, 1),
        f"one recording started per call ({len(every_call)} calls)",
    )
    checks.equal(
        stats["requests_by_route"].get("POST /Calls/{call_sid}/Recordings", 0),
        len(every_call),
        "one start request per call (no start repeated)",
    )


def _verify_triggerer_restart(checks: Checks, scenario: Scenario, stats: dict[str, Any]) -> None:
    print("triggerer killed with SIGKILL while waits were deferred, then restarted:", flush=True)
    restart = scenario.triggerer_restart
    if not checks.check(
        bool(restart), "the triggerer was killed and restarted while the waits were deferred"
    ):
        return
    checks.check(
        True,
        f"a new triggerer resumed all {len(restart['sids'])} deferred waits "
        f"({restart['resumed_after']:.1f} s after the kill)",
    )
    calls = [call for run in (scenario.runs["mapped"], scenario.runs["deferred"]) for call in run.calls]
    recordings = {call: scenario.recordings_of(call) for call in calls}
    checks.check(
        all(len(found) == 1 and found[0]["status"] == "completed" for found in recordings.values()),
        "each of their calls has exactly one recording, completed (none twice, none lost)",
        recordings,
    )
    checks.check(
        all(stats["completed_at"].get(sid) for sid in restart["sids"][: len(calls)]),
        "the sandbox saw every one of those recordings complete",
    )


def _verify_marked_failed(checks: Checks, scenario: Scenario, *, stop_on_kill: bool) -> None:
    run = scenario.runs["marked_failed"]
    print("a deferred wait_for_completion task marked failed through the REST API:", flush=True)
    checks.equal(_states(run, "record_call"), ["failed"], "record_call is failed")
    checks.equal(run.state, "failed", "run failed")
    if not stop_on_kill:
        print(
            "  PENDING  its recording is stopped (needs the trigger's on_kill with stop_on_kill=True)",
            flush=True,
        )
        return
    sid = scenario.recordings_of(run.calls[0])[0]["sid"]

    def stopped() -> dict[str, Any] | None:
        recording = scenario.sandbox.recording(sid)
        return recording if recording["status"] in STOPPED else None

    try:
        recording = wait_for(stopped, "the recording to be stopped", timeout=20)
    except TimeoutError:
        recording = scenario.sandbox.recording(sid)
    checks.check(
        recording["status"] in STOPPED, "its recording was stopped (the call is still live)", recording
    )


def _verify_timeout(checks: Checks, scenario: Scenario, stats: dict[str, Any], *, stop_on_kill: bool) -> None:
    run = scenario.runs["timeout"]
    api = scenario.api
    print("system_telnyx_operator_timeout (waits that time out, deferred and in the worker):", flush=True)
    checks.equal(run.state, "failed", "run failed")
    for task_id, call_sid in (("deferred_wait", run.calls[0]), ("worker_wait", run.calls[1])):
        ti = run.ti(task_id)
        checks.equal(ti["state"], "failed", f"{task_id} failed")
        checks.equal(ti["try_number"], 1, f"{task_id}: a timeout is not retried")
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
    expected = 3 if stop_on_kill else 2
    checks.equal(stops, expected, f"{expected} stop requests in all (one per stopped recording)")


#: What the scheduler logs when Airflow's race (apache/airflow #71172) fails a rescheduled or deferred task.
RACE_MESSAGE = "finished with state success, but the task instance's state attribute is"


def verify_retries(checks: Checks, scenario: Scenario, scheduler_logs: list[Path]) -> None:
    """Report every task that needed a retry, and check each was Airflow's race, not our code.

    A retry the scheduler did not log as the race is a failure: a real regression must never hide behind
    the task retries the DAGs carry.
    """
    race_lines = [
        line
        for log in scheduler_logs
        for line in log.read_text(errors="replace").splitlines()
        if RACE_MESSAGE in line
    ]
    retried, unexplained = [], []
    for run in scenario.runs.values():
        for ti in run.tis:
            if ti["try_number"] <= 1:
                continue
            index = "" if ti["map_index"] == -1 else f"[{ti['map_index']}]"
            what = f"{run.dag_id}/{ti['task_id']}{index} ({run.name}): try {ti['try_number']}, {ti['state']}"
            needle = f"{run.dag_id}.{ti['task_id']} {run.run_id}"
            races = sum(1 for line in race_lines if needle in line)
            retried.append(f"{what}; the scheduler logged the race {races} time(s)")
            if races < ti["try_number"] - 1:
                unexplained.append(what)
    print(f"tasks that needed a retry: {len(retried)} (Airflow's race, apache/airflow #71172)", flush=True)
    for line in retried:
        print(f"  {line}", flush=True)
    checks.check(not unexplained, "every retry was Airflow's race, logged by the scheduler", unexplained)
