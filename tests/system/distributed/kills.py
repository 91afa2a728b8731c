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


def _deferred_unclaimed(cluster: Cluster, calls: int) -> WaitsRun:
    """A run whose waits are deferred while both triggerers are frozen (SIGSTOP): no trigger picked up yet.

    The caller resumes the triggerers (:func:`_resume`); until then no trigger of the run can run.
    """
    for name in TRIGGERERS:
        cluster.deployment.pause(name)
    run = WaitsRun.trigger(cluster, calls)
    wait_for(lambda: run.all_in("deferred"), "the waits to defer (triggerers frozen)", 300, interval=0.2)
    return run


def _resume(cluster: Cluster, *names: str) -> None:
    for name in names:
        cluster.deployment.resume(name)


def marked_failed(checks: Checks, cluster: Cluster) -> None:
    """A wait held by each triggerer marked failed, then one marked failed before any triggerer had it.

    To know which triggerer holds a wait, the waits defer while both triggerers are frozen and one is thawed
    first: it picks them all up (its trigger logs say so), then the other is thawed.
    """
    runs, others = [], []
    for holder in TRIGGERERS:
        run = _deferred_unclaimed(cluster, 2)
        runs.append(run)
        _resume(cluster, holder)
        job = cluster.triggerer_jobs[holder]
        try:
            wait_for(
                lambda r=run, j=job: started_on(cluster, r, j) == {0, 1}, f"{holder} to pick both up", 120
            )
        finally:
            _resume(cluster, *TRIGGERERS)
        _mark_failed(cluster, run, 0)
        print(f"  marked wait [0] of {run.run_id} failed while {holder} holds it", flush=True)
        _stopped_once(checks, cluster, _sid(run, 0), f"the wait held by {holder}")
        others.append(_sid(run, 1))

    early = _deferred_unclaimed(cluster, 1)
    try:
        _mark_failed(cluster, early, 0)
        print("  marked a wait failed the moment it showed deferred (no triggerer running)", flush=True)
    finally:
        _resume(cluster, *TRIGGERERS)
    _stopped_once(checks, cluster, _sid(early, 0), "the wait marked failed before any triggerer had it")
    checks.equal([ti["state"] for ti in early.observe()], ["failed"], "that wait stays failed")

    for run in [*runs, early]:
        run.hang_up()
    for run in runs:
        wait_for(lambda r=run: r.run_state() in ("success", "failed"), "the run to end", 300, interval=1)
    second = [{ti["map_index"]: ti["state"] for ti in run.observe()}.get(1) for run in runs]
    checks.equal(second, ["success"] * len(runs), "the waits not marked failed succeeded")
    checks.equal({sid: _updates(cluster, sid) for sid in others}, dict.fromkeys(others, 0),
                 "the waits not marked failed: no stop request")  # fmt: skip


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
