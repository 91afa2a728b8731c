"""Deferred waits on two triggerers: runs of ``system_dist_deferred_waits`` and what the sandbox saw."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tests.system.clients import wait_for

if TYPE_CHECKING:
    from pathlib import Path

    from tests.system.checks import Checks
    from tests.system.distributed.cluster import Cluster

DAG_ID = "system_dist_deferred_waits"
TASK_ID = "record_call"


@dataclass
class WaitsRun:
    """One run of the deferred-waits DAG over ``calls``."""

    cluster: Cluster
    calls: list[str]
    run_id: str = ""
    tis: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def trigger(cls, cluster: Cluster, count: int) -> WaitsRun:
        """New live calls (they never hang up by themselves) and a run recording each."""
        calls = [cluster.sandbox.create_call() for _ in range(count)]
        run = cls(cluster, calls)
        run.run_id = cluster.api.trigger(DAG_ID, {"call_sids": calls})
        print(f"  triggered {DAG_ID} over {count} calls: {run.run_id}", flush=True)
        return run

    def observe(self) -> list[dict[str, Any]]:
        """The run's mapped wait tasks (all map indexes), read once."""
        api = self.cluster.api
        path = f"/api/v2/dags/{DAG_ID}/dagRuns/{self.run_id}/taskInstances"
        tis = []
        offset = 0
        while True:
            page = api.json("GET", path, params={"limit": 100, "offset": offset, "task_id": TASK_ID})
            tis += [ti for ti in page["task_instances"] if ti["task_id"] == TASK_ID]
            offset += 100
            if offset >= page["total_entries"]:
                break
        self.tis = tis
        return tis

    def states(self) -> dict[str, int]:
        """How many waits are in each state."""
        counts: dict[str, int] = {}
        for ti in self.observe():
            counts[str(ti["state"])] = counts.get(str(ti["state"]), 0) + 1
        return counts

    def all_in(self, *states: str) -> bool:
        """Whether every wait exists and is in one of ``states``."""
        tis = self.observe()
        return len(tis) == len(self.calls) and all(ti["state"] in states for ti in tis)

    def run_state(self) -> str:
        """The DAG run's state."""
        return str(self.cluster.api.dag_run(DAG_ID, self.run_id)["state"])

    def recordings(self) -> dict[str, list[dict[str, Any]]]:
        """Every recording the sandbox holds for each call."""
        return {call: self.cluster.sandbox.call_recordings(call) for call in self.calls}

    def hang_up(self) -> None:
        """Every caller hangs up."""
        for call in self.calls:
            self.cluster.sandbox.hangup(call)


def verify_completed_once(checks: Checks, run: WaitsRun, what: str) -> None:
    """Each call has exactly one recording, completed, that nothing stopped; every wait succeeded."""
    found = run.recordings()
    checks.check(
        all(len(recs) == 1 for recs in found.values()),
        f"{what}: one recording per call (none started twice, none lost)",
        {call: len(recs) for call, recs in found.items() if len(recs) != 1},
    )
    stats = run.cluster.sandbox.stats()
    sids = [recs[0]["sid"] for recs in found.values() if recs]
    updates = {sid: stats["updates_per_recording"].get(sid, 0) for sid in sids}
    stopped = {sid: count for sid, count in updates.items() if count}
    checks.check(not stopped, f"{what}: no recording was stopped", stopped)
    completed = all(stats["completed_at"].get(sid) for sid in sids)
    checks.check(completed, f"{what}: the sandbox saw every recording complete")
    tis = run.observe()
    checks.equal(sorted({str(ti["state"]) for ti in tis}), ["success"], f"{what}: every wait task succeeded")
    checks.equal(run.run_state(), "success", f"{what}: the run succeeded")


def smoke(checks: Checks, cluster: Cluster) -> None:
    """Four waits defer, the callers hang up, each wait ends with its completed recording."""
    run = WaitsRun.trigger(cluster, 4)
    wait_for(lambda: run.all_in("deferred"), "the four waits to defer", 180)
    checks.check(True, "four waits deferred through the Celery workers")
    run.hang_up()
    wait_for(lambda: run.run_state() in ("success", "failed"), "the run to end", 180)
    verify_completed_once(checks, run, "smoke")


def trigger_log_files(cluster: Cluster, run: WaitsRun) -> list[Path]:
    """The run's trigger log files (``.../map_index=<i>/attempt=<n>.log.trigger.<job id>.log``)."""
    home = cluster.deployment.home
    folder = home / "logs" / f"dag_id={DAG_ID}" / f"run_id={run.run_id}" / f"task_id={TASK_ID}"
    return sorted(folder.glob("map_index=*/attempt=*.log.trigger.*.log"))


def trigger_logs(cluster: Cluster, run: WaitsRun) -> dict[int, dict[int, list[str]]]:
    """The run's trigger logs: triggerer job id -> map index -> the events it logged for that wait."""
    found: dict[int, dict[int, list[str]]] = {}
    for path in trigger_log_files(cluster, run):
        job = int(path.name.rsplit(".", 2)[-2])
        index = int(path.parent.name.split("=", 1)[1])
        events = []
        for line in path.read_text(errors="replace").splitlines():
            try:
                events.append(str(json.loads(line).get("event", "")))
            except ValueError:
                events.append(line)
        found.setdefault(job, {})[index] = events
    return found


def started_on(cluster: Cluster, run: WaitsRun, job: int) -> set[int]:
    """Map indexes whose trigger the triggerer ``job`` started."""
    return {
        index
        for index, events in trigger_logs(cluster, run).get(job, {}).items()
        if any(event.endswith("starting") for event in events)
    }


def logged(cluster: Cluster, run: WaitsRun, job: int, text: str) -> set[int]:
    """Map indexes whose trigger log on triggerer ``job`` has an event containing ``text``."""
    return {
        index
        for index, events in trigger_logs(cluster, run).get(job, {}).items()
        if any(text in event for event in events)
    }
