"""The DAG runs of the system test and the caller's side of each call, driven by what the runs do.

All runs are triggered at once. While they go, the test watches their task instances through the REST API
and plays the callers: a call hangs up once its wait has been seen where it must be seen (``running`` for a
reschedule sensor, ``deferred`` for a trigger). The deferred waits
also live through a triggerer killed with SIGKILL, and one deferred task is marked failed by hand.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tests.system.clients import wait_for

if TYPE_CHECKING:
    from pathlib import Path

    from tests.system.clients import AirflowApi, SandboxClient
    from tests.system.deployment import Deployment

TERMINAL = {"success", "failed"}
#: Task states after which a wait is no longer going to be deferred (or is deferred now).
SETTLED = {"deferred", "success", "failed", "upstream_failed", "skipped"}
#: Seconds the test waits for all runs to end: a guard against a hang, not a speed target (on a loaded
#: 2-core machine the runs have taken up to ~160 s).
RUNS_DEADLINE = 360


@dataclass
class Run:
    """One DAG run of the test: what it was given, and every task state it was seen in."""

    name: str
    dag_id: str
    conf: dict[str, Any]
    calls: list[str]
    run_id: str = ""
    state: str | None = None
    tis: list[dict[str, Any]] = field(default_factory=list)
    seen: dict[tuple[str, int], set[str]] = field(default_factory=dict)

    def observe(self, api: AirflowApi) -> None:
        """Read the run's state and task instances once."""
        self.tis = api.task_instances(self.dag_id, self.run_id)
        for ti in self.tis:
            self.seen.setdefault((ti["task_id"], ti["map_index"]), set()).add(str(ti["state"]))
        self.state = api.dag_run(self.dag_id, self.run_id)["state"]

    def now_in(self, task_id: str, state: str) -> list[int]:
        """Map indexes of ``task_id`` currently in ``state``."""
        return [ti["map_index"] for ti in self.tis if ti["task_id"] == task_id and ti["state"] == state]

    def was_seen(self, task_id: str, state: str, map_index: int = -1) -> bool:
        """Whether the task instance was ever observed in ``state``."""
        return state in self.seen.get((task_id, map_index), set())

    def ti(self, task_id: str, map_index: int = -1) -> dict[str, Any]:
        """The last observed task instance."""
        return next(t for t in self.tis if t["task_id"] == task_id and t["map_index"] == map_index)

    @property
    def done(self) -> bool:
        return self.state in TERMINAL or self.state == "missing"


#: The runs: (name, DAG id, live calls it records). Every example DAG must be here (the test checks it).
RUNS = (
    ("recording", "example_telnyx_call_recording", 1),
    ("arrived", "example_telnyx_recording_arrived", 0),
    ("mapped", "example_telnyx_record_many_calls", 3),
    ("taskflow", "example_telnyx_taskflow", 1),
    ("reschedule", "system_telnyx_reschedule_sensor", 1),
    ("deferred", "system_telnyx_operator_deferred", 1),
    ("marked_failed", "system_telnyx_operator_deferred", 1),
    ("timeout", "system_telnyx_operator_timeout", 2),
)
DAG_IDS = sorted({dag_id for _, dag_id, _ in RUNS})
#: DAGs scheduled on an asset: the scheduler starts their runs, the test only finds and watches them.
ASSET_SCHEDULED = {"example_telnyx_recording_arrived": "recording"}


def _conf(dag_id: str, calls: list[str], storage: Path) -> dict[str, Any]:
    """The run's ``conf``: its calls under the DAG's param names (and where to store audio)."""
    if dag_id == "example_telnyx_call_recording":
        return {"call_sid": calls[0], "destination": f"{storage.as_uri()}/"}
    if dag_id == "example_telnyx_record_many_calls":
        return {"call_sids": calls}
    if dag_id == "system_telnyx_operator_timeout":
        return {"deferred_call_sid": calls[0], "worker_call_sid": calls[1]}
    return {"call_sid": calls[0]} if calls else {}


class Scenario:
    """Triggers the runs, plays the callers, kills and restarts the triggerer, marks a task failed.

    :param api: the Airflow REST client.
    :param sandbox: the sandbox client.
    :param deployment: the processes (for the triggerer kill).
    """

    def __init__(self, api: AirflowApi, sandbox: SandboxClient, deployment: Deployment) -> None:
        self.api, self.sandbox, self.deployment = api, sandbox, deployment
        #: Where example_telnyx_call_recording stores the audio (its ``destination`` param).
        self.storage = deployment.home / "recordings"
        self.runs: dict[str, Run] = {}
        for name, dag_id, calls in RUNS:
            call_sids = [sandbox.create_call() for _ in range(calls)]
            self.runs[name] = Run(name, dag_id, _conf(dag_id, call_sids, self.storage), call_sids)
        self.hung_up: set[str] = set()
        #: What happened to the triggerer: GET counts and timings, for the checks.
        self.triggerer_restart: dict[str, Any] = {}

    def trigger_all(self) -> None:
        """Trigger every run at once (a DAG that did not import is left out: its checks fail)."""
        for run in self.runs.values():
            if run.dag_id in ASSET_SCHEDULED:
                continue
            if not self.api.request("GET", f"/api/v2/dags/{run.dag_id}").ok:
                run.state = "missing"
                print(f"  cannot trigger {run.dag_id} ({run.name}): the DAG is not there", flush=True)
                continue
            run.run_id = self.api.trigger(run.dag_id, run.conf)
            print(f"  triggered {run.dag_id} ({run.name}): {run.run_id}", flush=True)

    def _hang_up(self, *calls: str) -> None:
        for call_sid in calls:
            if call_sid not in self.hung_up:
                self.sandbox.hangup(call_sid)
                self.hung_up.add(call_sid)

    def _find_asset_runs(self) -> None:
        """Pick up the run the scheduler started for an asset-scheduled DAG once its producer succeeded."""
        for dag_id, producer_name in ASSET_SCHEDULED.items():
            run = self.runs[next(name for name, d, _ in RUNS if d == dag_id)]
            producer = self.runs[producer_name]
            if run.run_id or run.state == "missing":
                continue
            if producer.done and producer.state != "success":
                run.state = "missing"  # no asset event will come
                continue
            found = self.api.json("GET", f"/api/v2/dags/{dag_id}/dagRuns", params={"limit": 10})["dag_runs"]
            if found:
                run.run_id = str(found[0]["dag_run_id"])
                print(f"  the scheduler started {dag_id} on the asset event: {run.run_id}", flush=True)

    def _deferred_waits(self) -> list[tuple[Run, str, int, str]]:
        """The waits the triggerer must carry through its restart: (run, task, map index, call)."""
        mapped = self.runs["mapped"]
        waits = [(mapped, "wait_for_recording", index, call) for index, call in enumerate(mapped.calls)]
        for name in ("recording", "taskflow"):
            waits.append((self.runs[name], "wait_for_recording", -1, self.runs[name].calls[0]))
        for name in ("deferred", "marked_failed"):
            waits.append((self.runs[name], "record_call", -1, self.runs[name].calls[0]))
        return waits

    def _deferral_settled(self) -> bool:
        """Whether every wait is deferred now, or can no longer be (its task or run ended)."""
        for run, task_id, map_index, _ in self._deferred_waits():
            states = [
                ti["state"] for ti in run.tis if ti["task_id"] == task_id and ti["map_index"] == map_index
            ]
            if not (run.done or (states and states[0] in SETTLED)):
                return False
        return True

    def play(self) -> dict[str, str | None]:
        """Watch the runs until all have ended, acting on what is seen.

        :return: the runs still going after :data:`RUNS_DEADLINE` seconds, with their state (none: ``{}``).
        """
        deadline = time.monotonic() + RUNS_DEADLINE
        restarted = False
        while True:
            for run in self.runs.values():
                if run.run_id and not run.done:
                    run.observe(self.api)
            self._find_asset_runs()
            reschedule = self.runs["reschedule"]
            if reschedule.was_seen("wait_for_recording", "up_for_reschedule"):
                self._hang_up(*reschedule.calls)
            if not restarted and self._deferral_settled():
                deferred = [w for w in self._deferred_waits() if w[2] in w[0].now_in(w[1], "deferred")]
                if deferred:
                    self._restart_triggerer(deferred)
                marked = self.runs["marked_failed"]
                if marked.now_in("record_call", "deferred"):
                    self._mark_failed()
                # The marked-failed task's caller keeps talking: only the trigger's on_kill may end it.
                self._hang_up(*(call for run, _, _, call in self._deferred_waits() if run is not marked))
                restarted = True
            pending = {run.name: run.state for run in self.runs.values() if not run.done}
            if not pending or time.monotonic() > deadline:
                return pending
            time.sleep(0.5)

    def recordings_of(self, call_sid: str) -> list[dict[str, Any]]:
        """Every recording the sandbox holds for the call."""
        return self.sandbox.call_recordings(call_sid)

    def _restart_triggerer(self, deferred: list[tuple[Run, str, int, str]]) -> None:
        """SIGKILL the triggerer's process group while the waits are deferred; start a new triggerer.

        Then wait until the new triggerer polls every deferred recording (a GET, or a shared listing).
        """
        sids = [self.recordings_of(call_sid)[0]["sid"] for *_, call_sid in deferred]
        print(f"  killing the triggerer (SIGKILL) with {len(sids)} waits deferred", flush=True)
        self.deployment.kill("triggerer")
        before = self._looks(sids)
        killed_at = time.monotonic()
        self.deployment.start_airflow("triggerer", generation=2)

        def all_polled_again() -> bool:
            now = self._looks(sids)
            return all(now[sid] > before[sid] for sid in sids)

        print(
            f"  looks per deferred recording before the kill: {[before[sid] for sid in sids]}",
            flush=True,
        )
        try:
            wait_for(all_polled_again, "the new triggerer to poll every deferred recording", timeout=90)
            resumed_after: float | None = time.monotonic() - killed_at
        except TimeoutError:
            resumed_after = None
        self.triggerer_restart = {
            "sids": sids,
            "waits": len(self._deferred_waits()),
            "resumed_after": resumed_after,
        }
        print(
            f"  new triggerer polling again: {resumed_after and round(resumed_after, 1)} s after the kill",
            flush=True,
        )

    def _looks(self, sids: list[str]) -> dict[str, int]:
        """How often the service showed each recording: by a GET or on a list page (shared polls)."""
        stats = self.sandbox.stats()
        gets, listed = stats["gets_per_recording"], stats["listings_per_recording"]
        return {sid: gets.get(sid, 0) + listed.get(sid, 0) for sid in sids}

    def _mark_failed(self) -> None:
        run = self.runs["marked_failed"]
        self.api.mark_failed(run.dag_id, run.run_id, "record_call")
        print(f"  marked {run.dag_id} {run.run_id} record_call failed while deferred", flush=True)
