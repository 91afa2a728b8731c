"""Scenario 3: a Celery worker SIGKILLed between the start's POST and storing the recording's SID.

The sandbox carries the start out and holds its reply (fault ``slow_after``); while the task waits for it, the
test finds the worker process running that task instance (its title names the task instance's id) and kills
that worker's whole process group. Airflow fails the try once its heartbeat is stale, the retry runs on a
worker and must resume the recording the dead try started: one recording on the call, one start carried out.
It runs in both modes of issue 14:

- default mode (``start_recording``: no receiver in the callback URL): the retry finds the recording through
  the snapshot of the call's recordings the first try stored before sending the start (Airflow 3.3's task
  state store), the sole new match of a ``both``-track start;
- exact mode (``start_exact``: ``exact_start=True``, the status callback to the API server's receiver on
  connection ``telnyx_exact``, whose ``receiver_url`` reaches the API server): the first try stored its start
  token before the POST; the sandbox sent the signed ``in-progress`` callback carrying it to the API server's
  receiver (one of its two workers), and the retry asks ``GET /telnyx/starts/{token}`` (maybe on the other
  worker) and adopts the recording on that evidence, which its log names. Judged from the sandbox's side (one
  recording, one start, its callback URL carrying the token, one callback sent, nothing stopped), from the
  receiver's (the token's sighting names the recording) and from Airflow's (the retry returned that
  recording, its log says it adopted it on the start token, no task log shows the token).

Then the same DAG's ``record_and_wait``: a wait in poke mode (in the worker) whose worker is SIGKILLed
mid-wait; the retry resumes the recording the dead try started and returns it once the caller hangs up.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, urlsplit

from tests.system.clients import wait_for
from tests.system.distributed.cluster import TASK_STALE_AFTER, WORKERS, receiver_url, start_worker

if TYPE_CHECKING:
    from tests.system.checks import Checks
    from tests.system.distributed.cluster import Cluster

DAG_ID = "system_dist_start_retry"
TASK_ID = "start_recording"
EXACT_TASK_ID = "start_exact"
#: What the retry's log says when it adopted the recording on its start token (``adoption.Evidence.TOKEN``).
TOKEN_EVIDENCE = "evidence: its start token, carried by a signed status callback naming the recording"
START_ROUTE = "POST /Calls/{call_sid}/Recordings"


def _group_running(cluster: Cluster, ti_id: str) -> str | None:
    """The worker whose process group holds the task of ``ti_id`` (titled ``airflow worker -- <id>``).

    The task process may sit in a session of its own: its parents are followed up to the worker's group.
    """
    groups = {cluster.deployment.processes[name].pid: name for name in WORKERS}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if ti_id not in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                continue
            pid = int(proc.name)
            for _ in range(10):
                if (name := groups.get(os.getpgid(pid))) is not None:
                    return name
                pid = int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if pid <= 1:
                    break
        except (OSError, ProcessLookupError, ValueError, IndexError):
            continue
    return None


def worker_killed_mid_start(checks: Checks, cluster: Cluster) -> None:
    """SIGKILL the worker while the start's reply is held (default mode, then exact mode); the retry resumes
    the same recording. Then the same under a wait in poke mode."""
    _killed_mid_start(checks, cluster, exact=False)
    _killed_mid_start(checks, cluster, exact=True)
    _worker_killed_while_poking(checks, cluster)


def _killed_mid_start(checks: Checks, cluster: Cluster, *, exact: bool) -> None:
    sandbox = cluster.sandbox
    mode, task_id = ("exact mode", EXACT_TASK_ID) if exact else ("default mode", TASK_ID)
    call = sandbox.create_call()
    sandbox.inject(START_ROUTE, "slow_after", call_sid=call)
    conf: dict[str, Any] = {"call_sid": call}
    if exact:
        callback = f"{receiver_url(cluster.deployment)}/recording-status?conn_id=telnyx_exact"
        conf.update(exact=True, callback_url=callback)
    run_id = cluster.api.trigger(DAG_ID, conf)
    ti_path = f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run_id)}/taskInstances/{task_id}"
    wait_for(
        lambda: sandbox.stats()["starts_per_call"].get(call) == 1,
        f"{mode}: the start to be carried out",
        300,
        0.1,
    )
    ti = cluster.api.json("GET", ti_path)
    worker = _kill_worker_running(cluster, ti)
    print(
        f"  {mode}: start carried out, reply held: SIGKILLed {worker} (task instance {ti['id']})", flush=True
    )
    checks.equal(ti["try_number"], 1, f"{mode}: the first try was running when its worker died")
    wait_for(
        lambda: cluster.api.dag_run(DAG_ID, run_id)["state"] in ("success", "failed"),
        f"{mode}: the retry to finish", TASK_STALE_AFTER + 300, interval=2,
    )  # fmt: skip
    ti = cluster.api.json("GET", ti_path)
    checks.equal((ti["state"], ti["try_number"] >= 2), ("success", True), f"{mode}: a retry succeeded")
    recordings = sandbox.call_recordings(call)
    checks.equal(
        len(recordings), 1, f"{mode}: one recording on the call (the retry resumed it, started none)"
    )
    checks.equal(
        sandbox.stats()["starts_per_call"].get(call), 1, f"{mode}: one start carried out by the service"
    )
    returned = cluster.api.xcom(DAG_ID, run_id, task_id)
    checks.check(
        isinstance(returned, dict) and recordings and returned.get("sid") == recordings[0]["sid"],
        f"{mode}: the retry returned the recording the killed try started",
        returned,
    )
    if exact and recordings:
        _judge_exact(checks, cluster, call, str(recordings[0]["sid"]), run_id, int(ti["try_number"]))
    sandbox.hangup(call)


def _judge_exact(checks: Checks, cluster: Cluster, call: str, sid: str, run_id: str, tries: int) -> None:
    """The exact start's evidence, from the sandbox's, the receiver's and Airflow's sides."""
    sandbox = cluster.sandbox
    started = sandbox.started_on(call)
    query = parse_qs(urlsplit(str(started[0].get("callback_url") or "")).query) if started else {}
    tokens = query.get("start_token", [])
    checks.equal(
        (len(started), len(tokens), query.get("conn_id")),
        (1, 1, ["telnyx_exact"]),
        "exact mode: the one start the service carried out sent its status callback to the receiver with a "
        "start token",
    )
    stats = sandbox.stats()
    checks.equal(
        stats["callbacks_by_recording"].get(sid), 1, "exact mode: the sandbox sent one (in-progress) callback"
    )
    checks.equal(stats["updates_per_recording"].get(sid, 0), 0, "exact mode: nothing stopped the recording")
    if tokens:
        token = tokens[0]
        reply = cluster.api.request("GET", f"/telnyx/starts/{token}")
        sightings = reply.json().get("sightings", []) if reply.ok else reply.text
        checks.check(
            isinstance(sightings, list)
            and [(s.get("recording_sid"), s.get("call_sid")) for s in sightings] == [(sid, call)],
            "exact mode: the receiver's sighting of the token names the recording (its signed callback)",
            sightings,
        )
    logs = {n: cluster.api.task_log(DAG_ID, run_id, EXACT_TASK_ID, n) for n in range(1, tries + 1)}
    adopted = [n for n, text in logs.items() if TOKEN_EVIDENCE in text and sid in text]
    checks.equal(
        adopted, [tries], "exact mode: the retry's log says it adopted the recording on its start token"
    )
    leaked = [n for n, text in logs.items() if any(token in text for token in tokens)]
    checks.equal(leaked, [], "exact mode: no task log shows the start token (a capability)")


def _kill_worker_running(cluster: Cluster, ti: dict[str, Any]) -> str:
    """SIGKILL the worker whose process group runs the task instance, and start it again; its name."""
    worker = wait_for(lambda: _group_running(cluster, str(ti["id"])), "the worker running the task", 30, 0.1)
    cluster.deployment.kill(worker)
    start_worker(cluster.deployment, worker, generation=cluster.generation(worker))
    return str(worker)


def _worker_killed_while_poking(checks: Checks, cluster: Cluster) -> None:
    sandbox = cluster.sandbox
    call = sandbox.create_call()
    run_id = cluster.api.trigger(DAG_ID, {"call_sid": call, "poke": True})
    ti_path = f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run_id)}/taskInstances/record_and_wait"
    sid = wait_for(
        lambda: (found := sandbox.call_recordings(call)) and found[0]["sid"], "the recording", 300, 0.5
    )
    # It is waiting: it has looked at the recording at least twice (one poll interval apart).
    wait_for(
        lambda: sandbox.stats()["gets_per_recording"].get(sid, 0) >= 2, "the wait in the worker", 120, 0.5
    )
    ti = cluster.api.json("GET", ti_path)
    worker = _kill_worker_running(cluster, ti)
    print(
        f"  SIGKILLed {worker} while record_and_wait (try {ti['try_number']}) waited in poke mode", flush=True
    )
    wait_for(
        lambda: cluster.api.json("GET", ti_path)["try_number"] >= 2, "the retry", TASK_STALE_AFTER + 300, 2
    )
    wait_for(lambda: cluster.api.json("GET", ti_path)["state"] == "running", "the retry to run", 300, 1)
    sandbox.hangup(call)
    wait_for(
        lambda: cluster.api.dag_run(DAG_ID, run_id)["state"] in ("success", "failed"),
        "the retried wait to finish", 300, interval=2,
    )  # fmt: skip
    ti = cluster.api.json("GET", ti_path)
    checks.equal((ti["state"], ti["try_number"] >= 2), ("success", True), "poke mode: a retry succeeded")
    recordings = sandbox.call_recordings(call)
    checks.equal(len(recordings), 1, "poke mode: one recording on the call (the retry resumed it)")
    checks.equal(sandbox.stats()["updates_per_recording"].get(sid, 0), 0, "poke mode: nothing stopped it")
    final = cluster.api.xcom(DAG_ID, run_id, "record_and_wait")
    checks.final_recording(final, "poke mode: the retry")
    checks.check(isinstance(final, dict) and final.get("sid") == sid, "poke mode: the same recording", final)
