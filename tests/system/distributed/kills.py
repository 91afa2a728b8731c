"""Scenario 2 (a user marks deferred waits failed) and scenario 6 (``execution_timeout`` while deferred).

Scenario 2: a wait held by each triggerer is marked failed through the REST API; each recording gets exactly
one stop request. Then a wait is marked failed the moment it shows ``deferred``, before any triggerer picked
its trigger up (both triggerers frozen with SIGSTOP make the window certain): its trigger never runs, so
only the API server's listener can stop it; once thawed, the triggerers must not stop it a second time.

Scenario 6: an operator's and a sensor's deferred waits whose ``execution_timeout`` is shorter than the
call: both end at that timeout; the operator's recording is stopped, the sensor's left alone.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from tests.system.clients import wait_for
from tests.system.distributed.cluster import TRIGGERERS
from tests.system.distributed.waits import DAG_ID, TASK_ID, WaitsRun, started_on

if TYPE_CHECKING:
    from tests.system.checks import Checks
    from tests.system.distributed.cluster import Cluster

TIMEOUT_DAG = "system_dist_execution_timeout"


def _mark_failed(cluster: Cluster, run: WaitsRun, map_index: int) -> None:
    path = f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run.run_id)}/taskInstances/{TASK_ID}"
    cluster.api.json("PATCH", path, params={"map_index": map_index}, json={"new_state": "failed"})


def _sid(run: WaitsRun, map_index: int) -> str:
    return str(run.cluster.sandbox.call_recordings(run.calls[map_index])[0]["sid"])


def _updates(cluster: Cluster, sid: str) -> int:
    return int(cluster.sandbox.stats()["updates_per_recording"].get(sid, 0))


def _stopped_once(checks: Checks, cluster: Cluster, sid: str, what: str) -> None:
    """Exactly one stop request for ``sid``, and no second one a while later."""
    with contextlib.suppress(TimeoutError):
        wait_for(lambda: _updates(cluster, sid) >= 1, f"{what}: the stop", 60)
        # Give a second, wrongful stop (from the other side) time to arrive before counting.
        wait_for(lambda: cluster.sandbox.recording(sid)["status"] == "completed", f"{what}: final", 30)
    checks.equal(_updates(cluster, sid), 1, f"{what}: exactly one stop request")


def marked_failed(checks: Checks, cluster: Cluster) -> None:
    """One wait per triggerer marked failed, then one marked failed before any triggerer picked it up."""
    run = WaitsRun.trigger(cluster, 6)
    wait_for(lambda: run.all_in("deferred"), "the six waits to defer", 300, interval=1)
    jobs = cluster.triggerer_jobs
    wait_for(lambda: sum(len(started_on(cluster, run, job)) for job in jobs.values()) >= 6, "pickup", 120)
    victims: dict[str, int] = {}
    for name, job in jobs.items():
        indexes = sorted(started_on(cluster, run, job))
        if indexes:
            victims[name] = indexes[0]
    checks.check(len(victims) == len(jobs), "both triggerers hold one of the waits", victims)
    for name, index in victims.items():
        _mark_failed(cluster, run, index)
        print(f"  marked wait [{index}] failed while {name} holds it", flush=True)
    for name, index in victims.items():
        _stopped_once(checks, cluster, _sid(run, index), f"the wait held by {name}")
    others = [i for i in range(len(run.calls)) if i not in victims.values()]
    checks.equal(
        {i: _updates(cluster, _sid(run, i)) for i in others}, dict.fromkeys(others, 0),
        "the waits not marked failed: no stop",
    )  # fmt: skip

    # Before any triggerer picks it up: both frozen while the task defers, marked failed at once.
    for name in TRIGGERERS:
        cluster.deployment.pause(name)
    try:
        early = WaitsRun.trigger(cluster, 1)
        wait_for(lambda: early.all_in("deferred"), "the wait to defer (triggerers frozen)", 300, interval=0.2)
        _mark_failed(cluster, early, 0)
        print("  marked a wait failed the moment it showed deferred (no triggerer running)", flush=True)
    finally:
        for name in TRIGGERERS:
            cluster.deployment.resume(name)
    _stopped_once(checks, cluster, _sid(early, 0), "the wait marked failed before any triggerer had it")
    checks.equal([ti["state"] for ti in early.observe()], ["failed"], "that wait stays failed")

    run.hang_up()
    early.hang_up()
    wait_for(lambda: run.run_state() in ("success", "failed"), "the run to end", 300, interval=1)
    states = {ti["map_index"]: ti["state"] for ti in run.observe()}
    checks.equal(
        {i: states.get(i) for i in others}, dict.fromkeys(others, "success"), "the other waits succeeded"
    )


def _task(cluster: Cluster, run_id: str, task_id: str) -> dict[str, Any]:
    path = f"/api/v2/dags/{TIMEOUT_DAG}/dagRuns/{quote(run_id)}/taskInstances/{task_id}"
    return cluster.api.json("GET", path)  # type: ignore[no-any-return]


def execution_timeout(checks: Checks, cluster: Cluster) -> None:
    """Deferred waits end at the task's execution_timeout: the operator stops, the sensor leaves alone."""
    calls = {
        "operator_call_sid": cluster.sandbox.create_call(),
        "sensor_call_sid": cluster.sandbox.create_call(),
    }
    run_id = cluster.api.trigger(TIMEOUT_DAG, calls)
    wait_for(
        lambda: cluster.api.dag_run(TIMEOUT_DAG, run_id)["state"] in ("success", "failed"), "the run", 300
    )
    for task_id, call_key, stops, says in (
        ("operator_wait", "operator_call_sid", 1, "Stopped recording"),
        ("sensor_wait", "sensor_call_sid", 0, "is left running (this sensor did not start it)"),
    ):
        ti = _task(cluster, run_id, task_id)
        checks.equal(ti["state"], "failed", f"{task_id}: failed at its execution_timeout")
        log = cluster.api.task_log(TIMEOUT_DAG, run_id, task_id, ti["try_number"])
        checks.check(
            says in log and "execution_timeout" in log,
            f"{task_id}: the task log (through the API) says why ({says!r}, execution_timeout)",
            log[-1500:],
        )
        raw = cluster.deployment.home / "logs" / f"dag_id={TIMEOUT_DAG}" / f"run_id={run_id}"
        raw_log = (raw / f"task_id={task_id}" / f"attempt={ti['try_number']}.log").read_text(errors="replace")
        checks.check(
            '"exc_type":"AirflowTaskTimeout"' in raw_log.replace(" ", ""),
            f"{task_id}: it failed with Airflow's own AirflowTaskTimeout",
        )
        (recording,) = cluster.sandbox.call_recordings(calls[call_key])
        checks.equal(_updates(cluster, recording["sid"]), stops, f"{task_id}: {stops} stop request(s)")
        expected = "in-progress" if stops == 0 else None
        if expected:
            checks.equal(recording["status"], expected, f"{task_id}: its recording still records")
    for call in calls.values():
        cluster.sandbox.hangup(call)
