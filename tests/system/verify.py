"""What the runs must have done: task states, XCom values and the sandbox's counters, one section per run."""

from __future__ import annotations

import hashlib
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.system.verify_faults import (
    Races,
    states,
    verify_marked_failed,
    verify_timeout,
    verify_triggerer_restart,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.system.checks import Checks
    from tests.system.scenarios import Scenario


def verify_runs(checks: Checks, scenario: Scenario, races: Races) -> None:
    """Every check on the finished runs, one section per run or fault.

    A run whose DAG could not be triggered fails its section; a section that breaks fails with its
    traceback, and the other sections still run.
    """
    stats = scenario.sandbox.stats()
    sections: list[tuple[str, str, Callable[[], None]]] = [
        ("recording", "example_telnyx_call_recording (deferrable sensor, audio stored, asset event)",
         lambda: _recording(checks, scenario)),
        ("arrived", "example_telnyx_recording_arrived (scheduled on the stored recordings' asset)",
         lambda: _arrived(checks, scenario)),
        ("mapped", "example_telnyx_record_many_calls (mapped, deferrable sensors)",
         lambda: _mapped(checks, scenario)),
        ("taskflow", "example_telnyx_taskflow (XCom keys feed a deferrable sensor)",
         lambda: _taskflow(checks, scenario)),
        ("reschedule", "system_telnyx_reschedule_sensor (reschedule-mode sensor)",
         lambda: _reschedule(checks, scenario)),
        ("deferred", "system_telnyx_operator_deferred (wait_for_completion, deferrable)",
         lambda: _deferred(checks, scenario)),
        ("mapped", "the triggerer killed with SIGKILL while waits were deferred, then restarted",
         lambda: verify_triggerer_restart(checks, scenario, stats)),
        ("marked_failed", "a deferred wait_for_completion task marked failed through the REST API",
         lambda: verify_marked_failed(checks, scenario)),
        ("timeout", "system_telnyx_operator_timeout (waits that time out, deferred and in the worker)",
         lambda: verify_timeout(checks, scenario, races)),
        ("recording", "every call", lambda: _every_call(checks, scenario, stats)),
    ]  # fmt: skip
    for name, title, verify in sections:
        print(f"{title}:", flush=True)
        run = scenario.runs[name]
        if not checks.check(bool(run.run_id), f"{run.dag_id} was triggered", run.state):
            continue
        try:
            verify()
        except Exception:
            checks.check(False, f"{title}: its checks ran to the end", traceback.format_exc())


def _all_succeeded(checks: Checks, scenario: Scenario, name: str, tasks: dict[str, int]) -> None:
    """The run succeeded and each task has ``count`` instances, all ``success``."""
    run = scenario.runs[name]
    checks.equal(run.state, "success", "run succeeded")
    for task_id, count in tasks.items():
        checks.equal(states(run, task_id), ["success"] * count, f"{task_id}: {count} x success")


def _recording(checks: Checks, scenario: Scenario) -> None:
    run, api = scenario.runs["recording"], scenario.api
    tasks = {"start_recording": 1, "wait_for_recording": 1, "store_recording": 1}
    _all_succeeded(checks, scenario, "recording", tasks)
    checks.check(run.was_seen("wait_for_recording", "deferred"), "the sensor was seen deferred", run.seen)
    started = api.xcom(run.dag_id, run.run_id, "start_recording")
    checks.check(
        # Telnyx's create reply (TexmlCreateCallRecordingResponseBody): the SID and track, no status.
        isinstance(started, dict) and bool(started.get("sid")) and started.get("track") == "both",
        "start_recording: the started recording in XCom",
        started,
    )
    _recording_keys(checks, scenario, "recording", started)
    final = api.xcom(run.dag_id, run.run_id, "wait_for_recording")
    checks.final_recording(final, "wait_for_recording")
    stored = api.xcom(run.dag_id, run.run_id, "store_recording")
    sid = final.get("sid") if isinstance(final, dict) else None
    if not checks.check(
        isinstance(stored, dict) and stored.get("recording_sid") == sid and sid is not None,
        "store_recording: what was stored, in XCom",
        stored,
    ):
        return
    path = Path(str(stored.get("path")).removeprefix("file://"))
    data = path.read_bytes() if path.is_file() and path.is_relative_to(scenario.storage) else b""
    checks.check(
        data[:4] == b"RIFF" and data[8:12] == b"WAVE",
        f"the audio is stored as a WAV under {scenario.storage}",
    )
    checks.equal(
        (len(data), hashlib.sha256(data).hexdigest()),
        (stored.get("size"), stored.get("sha256")),
        "the stored file has the size and SHA-256 the task reported",
    )


def _arrived(checks: Checks, scenario: Scenario) -> None:
    run, producer = scenario.runs["arrived"], scenario.runs["recording"]
    _all_succeeded(checks, scenario, "arrived", {"report_arrivals": 1})
    stored = scenario.api.xcom(producer.dag_id, producer.run_id, "store_recording")
    arrived = scenario.api.xcom(run.dag_id, run.run_id, "report_arrivals")
    keys = ("recording_sid", "path", "size", "sha256")
    checks.check(
        isinstance(arrived, list)
        and len(arrived) == 1
        and isinstance(stored, dict)
        and all(arrived[0].get(key) == stored.get(key) for key in keys),
        "report_arrivals: the asset event's extra is what store_recording stored",
        arrived,
    )


def _recording_keys(checks: Checks, scenario: Scenario, name: str, started: Any) -> None:
    """The start pushed ``recording_sid`` and ``recording_uri`` (what a failed wait still names)."""
    run = scenario.runs[name]
    for key, field in (("recording_sid", "sid"), ("recording_uri", "uri")):
        value = scenario.api.xcom(run.dag_id, run.run_id, "start_recording", key)
        checks.check(
            isinstance(started, dict) and bool(value) and value == started.get(field),
            f"start_recording pushed XCom {key}",
            value,
        )


def _mapped(checks: Checks, scenario: Scenario) -> None:
    run, api = scenario.runs["mapped"], scenario.api
    calls = len(run.calls)
    tasks = {"calls_to_record": 1, "start_recording": calls, "wait_for_recording": calls, "summarize": 1}
    _all_succeeded(checks, scenario, "mapped", tasks)
    checks.check(
        all(run.was_seen("wait_for_recording", "deferred", i) for i in range(calls)),
        "every mapped sensor was seen deferred",
        run.seen,
    )
    finals = [api.xcom(run.dag_id, run.run_id, "wait_for_recording", map_index=i) for i in range(calls)]
    for index, recording in enumerate(finals):
        checks.final_recording(recording, f"wait_for_recording[{index}]")
    total = sum(r["duration"] for r in finals if isinstance(r, dict) and isinstance(r.get("duration"), int))
    checks.equal(
        api.xcom(run.dag_id, run.run_id, "summarize"),
        {"recordings": calls, "total_seconds": total},
        "summarize: count and total duration",
    )


def _taskflow(checks: Checks, scenario: Scenario) -> None:
    run, api = scenario.runs["taskflow"], scenario.api
    tasks = {"find_call": 1, "start_recording": 1, "wait_for_recording": 1, "report": 1}
    _all_succeeded(checks, scenario, "taskflow", tasks)
    checks.check(run.was_seen("wait_for_recording", "deferred"), "the sensor was seen deferred", run.seen)
    _recording_keys(checks, scenario, "taskflow", api.xcom(run.dag_id, run.run_id, "start_recording"))
    final = api.xcom(run.dag_id, run.run_id, "wait_for_recording")
    checks.final_recording(final, "wait_for_recording")
    expected = (
        {key: final.get(key) for key in ("sid", "duration", "status")} if isinstance(final, dict) else None
    )
    checks.equal(
        api.xcom(run.dag_id, run.run_id, "report"), expected, "report: sid, duration and status of the final"
    )


def _reschedule(checks: Checks, scenario: Scenario) -> None:
    run = scenario.runs["reschedule"]
    _all_succeeded(checks, scenario, "reschedule", {"start_recording": 1, "wait_for_recording": 1})
    checks.check(
        run.was_seen("wait_for_recording", "up_for_reschedule"),
        "the sensor was seen up_for_reschedule",
        run.seen,
    )
    final = scenario.api.xcom(run.dag_id, run.run_id, "wait_for_recording")
    checks.final_recording(final, "wait_for_recording")


def _deferred(checks: Checks, scenario: Scenario) -> None:
    run = scenario.runs["deferred"]
    _all_succeeded(checks, scenario, "deferred", {"record_call": 1})
    checks.check(run.was_seen("record_call", "deferred"), "the operator was seen deferred", run.seen)
    checks.final_recording(scenario.api.xcom(run.dag_id, run.run_id, "record_call"), "record_call")


def _every_call(checks: Checks, scenario: Scenario, stats: dict[str, Any]) -> None:
    """One recording and one start request per call, over all runs."""
    calls = [call for run in scenario.runs.values() if run.run_id for call in run.calls]
    starts = stats["starts_per_call"]
    checks.equal(
        {call: starts.get(call, 0) for call in calls},
        dict.fromkeys(calls, 1),
        f"one recording started per call ({len(calls)} calls)",
    )
    checks.equal(
        stats["requests_by_route"].get("POST /Calls/{call_sid}/Recordings", 0),
        len(calls),
        "one start request per call (no start repeated)",
    )
