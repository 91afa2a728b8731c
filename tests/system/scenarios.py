"""The DAG runs of the system test and the caller's side of each call, driven by what the runs do.

All runs are triggered at once. While they go, the test watches their task instances through the REST API
and plays the callers: a call hangs up once its wait has been seen where it must be seen (``running`` for a
poke sensor, ``up_for_reschedule`` for a reschedule sensor, ``deferred`` for a trigger). The deferred waits
also live through a triggerer killed with SIGKILL, and one deferred task is marked failed by hand.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tests.system.clients import wait_for

if TYPE_CHECKING:
    from tests.system.clients import AirflowApi, SandboxClient
    from tests.system.deployment import Deployment

TERMINAL = {"success", "failed"}
#: Seconds a test may spend waiting for all runs to end.
RUNS_DEADLINE = 150


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
        return self.state in TERMINAL


class Scenario:
    """Triggers the runs, plays the callers, kills and restarts the triggerer, marks a task failed.

    :param api: the Airflow REST client.
    :param sandbox: the sandbox client.
    :param deployment: the processes (for the triggerer kill).
    """

    def __init__(self, api: AirflowApi, sandbox: SandboxClient, deployment: Deployment) -> None:
        self.api, self.sandbox, self.deployment = api, sandbox, deployment
        call = sandbox.create_call
        many = [call() for _ in range(3)]
        self.runs = {
            run.name: run
            for run in (
                Run("poke", "example_telnyx_call_recording", {}, [call()]),
                Run("mapped", "example_telnyx_record_many_calls", {"call_sids": many}, many),
                Run("reschedule", "system_telnyx_reschedule_sensor", {}, [call()]),
                Run("deferred", "system_telnyx_operator_deferred", {}, [call()]),
                Run("marked_failed", "system_telnyx_operator_deferred", {}, [call()]),
                Run("timeout", "system_telnyx_operator_timeout", {}, [call(), call()]),
            )
        }
        for name in ("poke", "reschedule", "deferred", "marked_failed"):
            self.runs[name].conf = {"call_sid": self.runs[name].calls[0]}
        timeout = self.runs["timeout"]
        timeout.conf = {"deferred_call_sid": timeout.calls[0], "worker_call_sid": timeout.calls[1]}
        self.hung_up: set[str] = set()
        #: What happened to the triggerer: GET counts and timings, for the checks.
        self.triggerer_restart: dict[str, Any] = {}
        self.marked_failed_at: float | None = None

    def trigger_all(self) -> None:
        """Trigger every run at once."""
        for run in self.runs.values():
            run.run_id = self.api.trigger(run.dag_id, run.conf)
            print(f"  triggered {run.dag_id} ({run.name}): {run.run_id}", flush=True)

    def _hang_up(self, *calls: str) -> None:
        for call_sid in calls:
            if call_sid not in self.hung_up:
                self.sandbox.hangup(call_sid)
                self.hung_up.add(call_sid)

    def _deferred_waits(self) -> list[tuple[Run, str]]:
        """The waits the triggerer must carry through its restart: (run, call)."""
        mapped = self.runs["mapped"]
        waits = [(mapped, call_sid) for call_sid in mapped.calls]
        ours = [self.runs["deferred"], self.runs["marked_failed"]]
        return [*waits, *((run, run.calls[0]) for run in ours)]

    def _all_deferred_now(self) -> bool:
        mapped = self.runs["mapped"]
        return (
            len(mapped.now_in("wait_for_recording", "deferred")) == len(mapped.calls)
            and bool(self.runs["deferred"].now_in("record_call", "deferred"))
            and bool(self.runs["marked_failed"].now_in("record_call", "deferred"))
        )

    def play(self) -> None:
        """Watch the runs until all have ended, acting on what is seen."""
        deadline = time.monotonic() + RUNS_DEADLINE
        restarted = False
        while True:
            for run in self.runs.values():
                if not run.done:
                    run.observe(self.api)
            poke, reschedule = self.runs["poke"], self.runs["reschedule"]
            if poke.now_in("wait_for_recording", "running"):
                self._hang_up(*poke.calls)
            if reschedule.was_seen("wait_for_recording", "up_for_reschedule"):
                self._hang_up(*reschedule.calls)
            if not restarted and self._all_deferred_now():
                self._restart_triggerer()
                self._mark_failed()
                self._hang_up(*self.runs["mapped"].calls, *self.runs["deferred"].calls)
                restarted = True
            if all(run.done for run in self.runs.values()):
                return
            if time.monotonic() > deadline:
                pending = {r.name: r.state for r in self.runs.values() if not r.done}
                raise TimeoutError(f"DAG runs not finished after {RUNS_DEADLINE} s: {pending}")
            time.sleep(0.5)

    def recordings_of(self, call_sid: str) -> list[dict[str, Any]]:
        """Every recording the sandbox holds for the call."""
        return self.sandbox.call_recordings(call_sid)

    def _restart_triggerer(self) -> None:
        """SIGKILL the triggerer's process group while the waits are deferred; start a new triggerer.

        Then wait until the new triggerer polls every deferred recording (its GET count grows).
        """
        sids = [self.recordings_of(call_sid)[0]["sid"] for _, call_sid in self._deferred_waits()]
        print(f"  killing the triggerer (SIGKILL) with {len(sids)} waits deferred", flush=True)
        self.deployment.kill("triggerer")
        before = self.sandbox.stats()["gets_per_recording"]
        killed_at = time.monotonic()
        self.deployment.start_airflow("triggerer", generation=2)

        def all_polled_again() -> bool:
            now = self.sandbox.stats()["gets_per_recording"]
            return all(now.get(sid, 0) > before.get(sid, 0) for sid in sids)

        wait_for(all_polled_again, "the new triggerer to poll every deferred recording", timeout=90)
        self.triggerer_restart = {"sids": sids, "resumed_after": time.monotonic() - killed_at}
        print(
            f"  new triggerer polls all {len(sids)} recordings, "
            f"{self.triggerer_restart['resumed_after']:.1f} s after the kill",
            flush=True,
        )

    def _mark_failed(self) -> None:
        run = self.runs["marked_failed"]
        self.api.mark_failed(run.dag_id, run.run_id, "record_call")
        self.marked_failed_at = time.time()
        print(f"  marked {run.dag_id} {run.run_id} record_call failed while deferred", flush=True)
