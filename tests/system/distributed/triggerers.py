"""Scenario 1: deferred waits on two triggerers, one SIGKILLed, then one frozen (SIGSTOP) and thawed.

SIGKILL: the other triggerer takes the waits over once the killed one's heartbeat is stale. SIGSTOP: the
frozen triggerer's waits move to the other one; thawed (SIGCONT), it finds them assigned elsewhere and
Airflow 3.3 cancels them "by user action", calling each trigger's ``on_kill`` (the path a user's mark-failed
takes). The provider must tell the two apart: no recording is stopped by a reassignment, none is started
twice, every wait completes.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import TYPE_CHECKING

from tests.system.clients import wait_for
from tests.system.distributed.cluster import TRIGGERER_STALE_AFTER
from tests.system.distributed.waits import (
    WaitsRun,
    logged,
    started_on,
    trigger_log_files,
    verify_completed_once,
)

if TYPE_CHECKING:
    from tests.system.checks import Checks
    from tests.system.distributed.cluster import Cluster

#: Deferred waits in the scenario (issue 16 asks 200: about 4 to 5 minutes of the CI run on 2 cores).
WAITS = int(os.environ.get("TELNYX_DIST_WAITS", "200"))
#: What the provider logs when Airflow cancels a wait its task still needs (see triggers/recording_kill.py).
LEFT_RUNNING = "the recording is left running"


def _stops(cluster: Cluster, run: WaitsRun) -> dict[str, int]:
    """Stop (update) requests the sandbox received for the run's recordings."""
    updates = cluster.sandbox.stats()["updates_per_recording"]
    sids = [recs[0]["sid"] for recs in run.recordings().values() if recs]
    return {sid: updates[sid] for sid in sids if updates.get(sid)}


def failover(checks: Checks, cluster: Cluster) -> None:
    """SIGKILL one triggerer, then SIGSTOP/SIGCONT one, while every wait is deferred."""
    run = WaitsRun.trigger(cluster, WAITS)
    began = time.monotonic()
    wait_for(lambda: run.all_in("deferred"), f"the {WAITS} waits to defer", 900, interval=2)
    jobs = dict(cluster.triggerer_jobs)
    wait_for(
        lambda: sum(len(started_on(cluster, run, job)) for job in jobs.values()) >= WAITS,
        "the triggerers to start every wait", 180, interval=2,
    )  # fmt: skip
    held = {name: started_on(cluster, run, job) for name, job in jobs.items()}
    print(f"  {WAITS} waits deferred in {time.monotonic() - began:.0f} s; held: "
          f"{ {name: len(indexes) for name, indexes in held.items()} }", flush=True)  # fmt: skip
    checks.check(all(held.values()), "the waits are spread over both triggerers", held)

    # SIGKILL the triggerer holding most; the other takes its waits over.
    victim = max(held, key=lambda name: len(held[name]))
    survivor = next(name for name in held if name != victim)
    print(f"  SIGKILL {victim} (holding {len(held[victim])} waits)", flush=True)
    killed_at = time.monotonic()
    cluster.deployment.kill(victim)
    wait_for(
        lambda: held[victim] <= started_on(cluster, run, jobs[survivor]),
        f"{survivor} to take over the killed triggerer's waits",
        TRIGGERER_STALE_AFTER + 180, interval=2,
    )  # fmt: skip
    checks.check(True, f"{survivor} took over {len(held[victim])} waits "
                 f"{time.monotonic() - killed_at:.0f} s after the SIGKILL")  # fmt: skip
    cluster.start_triggerer(victim)
    checks.equal(_stops(cluster, run), {}, "after the SIGKILL: no recording stopped")

    # SIGSTOP the one holding everything now; the restarted one takes over; SIGCONT: Airflow cancels the
    # frozen one's copies on the user-action path (on_kill), which must leave the recordings alone.
    frozen, other = survivor, victim
    print(f"  SIGSTOP {frozen} for longer than the {TRIGGERER_STALE_AFTER} s heartbeat threshold", flush=True)
    cluster.deployment.pause(frozen)
    try:
        wait_for(
            lambda: len(started_on(cluster, run, cluster.triggerer_jobs[other])) >= WAITS,
            f"{other} to take over the frozen triggerer's waits",
            TRIGGERER_STALE_AFTER + 180, interval=2,
        )  # fmt: skip
    finally:
        cluster.deployment.resume(frozen)
    print(f"  SIGCONT {frozen}", flush=True)
    # Trigger logs are rewritten when a triggerer starts a trigger again (triggers can move back and forth on
    # a loaded machine), so the on_kill calls are gathered while they happen. What a wait decided may be
    # logged after its trigger finished: then it lands in the triggerer's own log, so that is searched too.
    cancelled: set[tuple[int, int]] = set()
    sids = [recs[0]["sid"] for recs in run.recordings().values()]

    def decided() -> set[int]:
        for job in {*jobs.values(), *cluster.triggerer_jobs.values()}:
            cancelled.update((job, i) for i in logged(cluster, run, job, "invoking on_kill"))
        text = "\n".join(
            path.read_text(errors="replace")
            for path in (
                *cluster.deployment.component_logs.glob("triggerer-*.log"),
                *trigger_log_files(cluster, run),
            )
        )
        return {
            i
            for i, sid in enumerate(sids)
            if f"The wait for recording {sid} was cancelled; {LEFT_RUNNING}" in text
        }

    with contextlib.suppress(TimeoutError):  # the checks below say what was missing
        wait_for(
            lambda: {i for _, i in cancelled} <= decided() and len(cancelled) >= WAITS,
            f"{frozen}'s cancelled waits to leave their recordings running", 300, interval=2,
        )  # fmt: skip
    on_frozen = {i for job, i in cancelled if job == jobs[frozen]}
    print(
        f"  on_kill calls (Airflow's user-action path): {len(cancelled)} ({len(on_frozen)} on {frozen})",
        flush=True,
    )
    checks.equal(len(on_frozen), WAITS, f"{frozen}, thawed, cancelled its copy of every wait (on_kill)")

    def every_decision_logged() -> None:
        # After the deployment stopped: a triggerer writes what a wait decided after its trigger finished to
        # its own output, which may reach the file only when it exits.
        kept = decided()
        print(f"  waits that said they left their recording running: {len(kept)}", flush=True)
        checks.equal(
            {i for _, i in cancelled} - kept,
            set(),
            "every cancelled wait logged that it left its recording running",
        )

    cluster.after_stop.append(every_decision_logged)
    checks.equal(_stops(cluster, run), {}, "after the SIGSTOP/SIGCONT reassignment: no recording stopped")

    run.hang_up()
    wait_for(lambda: run.run_state() in ("success", "failed"), "the run to end", 600, interval=2)
    verify_completed_once(checks, run, f"{WAITS} waits through a SIGKILL and a SIGSTOP")
