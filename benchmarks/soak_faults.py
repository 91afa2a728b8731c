"""Soak: 1,000 calls, two recordings each, 30 % faults, a skewed clock, a lagging list and a 90 s outage.

Each path runs in each **mode**: ``exact`` (every start's status callback goes to the provider's real
receiver app, served on loopback by this script, so each attempt carries a start token) and ``default`` (no
callback: the visible-fields rule). The sandbox replies as Telnyx's schema says: no ``track`` in fetch or
list replies, so the figures never rest on it; the judge reads the sandbox's own record of what it started
(``GET /_sandbox/calls/{call_sid}/started``).

Prints figures; it is not a test. The TeXML sandbox runs in its own process (``python -m
telnyx_provider.sandbox``) on 127.0.0.1, every call live until the end. On every ``/v2`` request it injects
faults at ``--fault-rate``: 429 with ``Retry-After``, 500, 503, 504 (answered after the request was carried
out), connection resets before and after the request was carried out (a start whose reply is lost) and slow
replies. Its clock is ``--clock-skew`` seconds off ours (every date it reports is shifted), a new recording
stays out of the list endpoints for ``--list-lag`` seconds, and list pages hold at most ``--max-page-size``
recordings. In the middle of each path (once half the tasks have begun) the service is down for
``--outage`` seconds: every request gets a 503.

Each call gets **two** ``StartCallRecordingOperator`` tasks, ``recording_track="inbound"`` and
``"outbound"``, whose first tries start at the same moment from two threads. They run as Airflow 3.3 runs
them: ``execute(context)`` with a task state store (``context["task_state_store"]``, a dict here) that
outlives the task's tries, and a task retry (``--retry-delay``, ``--task-tries``) whenever a try fails.
Two paths, one after the other, each on its own calls:

* **poke**: ``wait_for_completion=True, deferrable=False``: the task starts and polls in its thread.
* **deferred**: ``wait_for_completion=True, deferrable=True``: the start runs in a thread and raises
  ``TaskDeferred``; the ``RecordingCompletedTrigger`` it carries is rebuilt from its ``serialize()`` JSON and
  run in one asyncio event loop, as the triggerer does; its event goes to ``execute_complete``.

What is reported is read from the service's side, with the faults off, once a path is done: every
recording of every call (all pages), and each recording a task returned. A **wrong adoption** is a task
that returned a recording of another call or of the other track, or the same recording as another task;
**lost** is a task without a completed recording of its own or a call x track with no recording at all;
a **duplicate** is a call x track recorded more than once. A **wait ended by the outage** is a try that
failed after its recording existed (a poke wait that raised, a trigger's ``error`` event): Airflow would
retry the task, the retry resumes the recording. Retries are counted from the provider's retry warnings
(their ``telnyx_retry`` extra), faults from the sandbox's own counters.

    python benchmarks/soak_faults.py                        # 1,000 calls per path, ~10 minutes on 2 cores
    python benchmarks/soak_faults.py --calls 50 --outage 20 # a quick look
    python benchmarks/soak_faults.py --markdown benchmarks/SOAK.md   # also write the figures as Markdown
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import shlex
import signal
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from sandbox_process import SandboxProcess  # benchmarks/ is on sys.path when a script runs

CONN_ID = "telnyx_soak"
FAULT_KINDS = ("429", "500", "503", "504", "reset_before", "reset_after", "slow")
TRACKS = ("inbound", "outbound")
PROCESSING_DELAY = 0.5
PATHS = ("poke", "deferred")
MODES = ("exact", "default")


# -- the sandbox process ------------------------------------------------------------------------------


def sandbox_options(args: argparse.Namespace) -> list[str]:
    """CLI flags: recording length, processing delay, faults, clock skew, list lag and page cap."""
    options = {
        "--recording-seconds": args.recording_seconds,
        "--processing-delay": PROCESSING_DELAY,
        "--fault-rate": args.fault_rate,
        "--faults": ",".join(FAULT_KINDS),
        "--retry-after": args.retry_after,
        "--slow-seconds": args.slow_seconds,
        "--seed": args.seed,
        "--clock-skew": args.clock_skew,
        "--list-lag": args.list_lag,
        "--max-page-size": args.max_page_size,
    }
    return [str(part) for option, value in options.items() for part in (option, value)]


def set_faults(sandbox: SandboxProcess, rate: float, kinds: tuple[str, ...]) -> None:
    """Change the sandbox's faults over its control surface (never faulted itself)."""
    body = json.dumps({"fault_rate": rate, "faults": list(kinds)}).encode()
    request = urllib.request.Request(
        f"{sandbox.origin}/_sandbox/faults", body, {"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=60):
        pass


class Outage:
    """Takes the service down (every request a 503) once ``trigger`` tasks have begun, for ``seconds``."""

    def __init__(self, sandbox: SandboxProcess, args: argparse.Namespace, trigger: int) -> None:
        self.sandbox, self.args, self.trigger = sandbox, args, trigger
        self.begun = 0
        self.window: tuple[float, float] | None = None
        self._lock = threading.Lock()
        self._reached = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="outage", daemon=True)
        self._thread.start()

    def task_begun(self) -> None:
        with self._lock:
            self.begun += 1
            if self.begun >= self.trigger:
                self._reached.set()

    def _run(self) -> None:
        self._reached.wait()
        if self._done.is_set() or self.args.outage <= 0:
            return
        set_faults(self.sandbox, 1.0, ("503",))
        began = time.time()
        self._done.wait(self.args.outage)
        set_faults(self.sandbox, self.args.fault_rate, FAULT_KINDS)
        self.window = (began, time.time())

    def finish(self) -> None:
        """End the outage early if the path finished first (it should not), and wait for the restore."""
        self._done.set()
        self._reached.set()
        self._thread.join(120)


# -- counting what the provider logs ------------------------------------------------------------------


class Tally(logging.Handler):
    """Counts the provider's retry warnings (reason, wait) and what starts and task retries log, silently."""

    MESSAGES: ClassVar[dict[str, str]] = {
        "Adopting recording": "lost start replies adopted (any evidence)",
        "evidence: its start token": "adoptions on a start token",
        "evidence: the sole recording": "adoptions on the sole new match",
        "sending it again with a new token": "lost starts sent again with a new token",
        "an earlier attempt of this start created it": "superseded recordings stopped",
        "superseded (an earlier attempt of a start that settled": "superseded, stopped by the receiver",
        "Nothing to stop: it had already ended": "of which had ended already",
        "ran until it ended": "superseded recordings that ran to their end unseen",
        "Resuming recording": "task retries resuming their recording",
        "started by an earlier try, is": "task retries returning their final recording",
        "An earlier try sent the start and lost its outcome": "retries adopting a lost start",
    }

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self._counting = threading.Lock()  # not ``self.lock``: that is the Handler's own lock
        self.reset()

    def reset(self) -> None:
        self.retries: Counter[str] = Counter()
        self.waited: Counter[str] = Counter()
        self.messages: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        retry = getattr(record, "telnyx_retry", None)
        with self._counting:
            if retry is not None:
                reason = "no reply" if retry["reason"].startswith("no reply") else retry["reason"]
                self.retries[reason] += 1
                self.waited["asked" if retry["asked"] else "backoff"] += retry["wait"]
                return
            message = record.getMessage()
            for needle, label in self.MESSAGES.items():
                if needle in message:
                    self.messages[label] += 1


def quiet_logs(tally: Tally) -> None:
    """Route the provider's and the operators' logs to the tally only (thousands of warnings otherwise).

    Operators log through structlog: it is pointed at the standard library's loggers, so their messages
    reach the tally too.
    """
    import structlog

    structlog.configure(
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        processors=[structlog.stdlib.PositionalArgumentsFormatter(), structlog.stdlib.render_to_log_kwargs],
    )
    for name in ("telnyx_provider", "airflow.task"):
        logger = logging.getLogger(name)
        logger.handlers = [tally]
        logger.propagate = False
        logger.setLevel(logging.INFO)


# -- one task, the way Airflow would run it -----------------------------------------------------------


class TaskStateStore:
    """Stands in for Airflow 3.3's ``context["task_state_store"]``: JSON values that outlive the tries."""

    def __init__(self) -> None:
        self._values: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self._values.get(key, default)

    def set(self, key: str, value: Any, *, retention: Any = None) -> None:
        self._values[key] = json.loads(json.dumps(value))


@dataclass
class TaskInstance:
    """What the operator reads of ``context["ti"]``: the try number, and XCom pushes."""

    try_number: int = 1
    xcom: dict[str, Any] = field(default_factory=dict)

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


@dataclass
class Task:
    """One ``StartCallRecordingOperator`` task (a call and a track) through its tries."""

    call_sid: str
    track: str
    together: threading.Barrier  # the call's two first tries start at the same moment
    store: TaskStateStore = field(default_factory=TaskStateStore)
    tries: int = 0
    failed_starts: int = 0  # tries that failed before their recording existed
    failed_waits: list[float] = field(default_factory=list)  # when tries failed after it existed
    ambiguous: int = 0
    uncertain: int = 0  # UncertainStartError that is not an AmbiguousStartError
    errors: list[str] = field(default_factory=list)
    recording: dict[str, Any] | None = None  # the final recording the task returned
    began: float = 0.0
    ended: float | None = None

    callback_url: str | None = None  # exact mode: the receiver's URL

    def operator(self, deferrable: bool, args: argparse.Namespace) -> Any:
        from telnyx_provider.operators.recording import StartCallRecordingOperator

        return StartCallRecordingOperator(
            recording_status_callback=self.callback_url,
            # Exact starts need the in-progress callback only (no asset events here: no metadata database).
            recording_status_callback_event="in-progress" if self.callback_url else None,
            task_id=f"record_{self.track}",
            call_sid=self.call_sid,
            recording_track=self.track,
            play_beep=False,
            telnyx_conn_id=CONN_ID,
            wait_for_completion=True,
            deferrable=deferrable,
            poll_interval=args.poll_interval,
            timeout=args.wait_timeout,
        )

    def context(self) -> tuple[dict[str, Any], TaskInstance]:
        self.tries += 1
        ti = TaskInstance(try_number=self.tries)
        return {"ti": ti, "task_state_store": self.store}, ti

    def first_try_begins(self, outage: Outage) -> None:
        """Wait for the call's other task, so both first tries start at the same moment."""
        outage.task_begun()
        with contextlib.suppress(threading.BrokenBarrierError):  # a partner that never came: go alone
            self.together.wait(10)
        self.began = time.time()

    def failed(self, error: BaseException, ti: TaskInstance) -> None:
        """Count a failed try, as a wait that gave up if the task's recording existed by then."""
        from telnyx_provider.errors import AmbiguousStartError, UncertainStartError
        from telnyx_provider.operators.start_memory import STATE_KEY

        self.errors.append(f"{type(error).__name__}: {error}"[:300])
        self.ambiguous += isinstance(error, AmbiguousStartError)
        self.uncertain += isinstance(error, UncertainStartError) and not isinstance(
            error, AmbiguousStartError
        )
        stored = self.store.get(STATE_KEY) or {}
        if "recording_sid" in ti.xcom or stored.get("recording_sid"):
            self.failed_waits.append(time.time())
        else:
            self.failed_starts += 1

    def done(self, recording: dict[str, Any]) -> None:
        self.recording, self.ended = recording, time.time()


def poke_task(task: Task, args: argparse.Namespace, outage: Outage) -> Task:
    """Run the task's tries in this thread, retrying as Airflow would."""
    task.first_try_begins(outage)
    while task.tries < args.task_tries:
        context, ti = task.context()
        try:
            task.done(task.operator(False, args).execute(context))
            return task
        except Exception as error:
            task.failed(error, ti)
        time.sleep(args.retry_delay)
    return task


def _execute_to_deferral(task: Task, args: argparse.Namespace, outage: Outage) -> tuple[str, Any, Any, Any]:
    """One try up to its deferral: ``("deferred", operator, TaskDeferred, ti)``, ``("done", ...)`` or
    ``("failed", ...)``."""
    from airflow.sdk.exceptions import TaskDeferred

    context, ti = task.context()
    if task.tries == 1:
        task.first_try_begins(outage)
    operator = task.operator(True, args)
    try:
        return "done", operator, operator.execute(context), ti
    except TaskDeferred as deferral:
        return "deferred", operator, deferral, ti
    except Exception as error:
        return "failed", operator, error, ti


def _complete(operator: Any, task: Task, event: dict[str, Any], kwargs: dict[str, Any]) -> Any:
    context = {"ti": TaskInstance(try_number=task.tries), "task_state_store": task.store}
    return operator.execute_complete(context, event, **kwargs)


async def deferred_task(
    task: Task, args: argparse.Namespace, outage: Outage, pool: ThreadPoolExecutor
) -> Task:
    """Each try: start in a thread until it defers, run its trigger in this loop, ``execute_complete``."""
    from telnyx_provider.triggers.recording import RecordingCompletedTrigger

    loop = asyncio.get_running_loop()
    while task.tries < args.task_tries:
        kind, operator, result, ti = await loop.run_in_executor(
            pool, _execute_to_deferral, task, args, outage
        )
        if kind == "done":
            task.done(result)
            return task
        if kind == "deferred":
            _, kwargs = result.trigger.serialize()  # as the triggerer does: rebuilt from the stored JSON
            trigger = RecordingCompletedTrigger(**json.loads(json.dumps(kwargs)))
            event = (await anext(trigger.run())).payload
            try:
                final = await loop.run_in_executor(
                    pool, _complete, operator, task, event, result.kwargs or {}
                )
            except Exception as error:
                task.failed(error, TaskInstance(xcom={"recording_sid": event.get("recording_sid")}))
            else:
                task.done(final)
                return task
        else:
            task.failed(result, ti)
        await asyncio.sleep(args.retry_delay)
    return task


# -- the two paths ------------------------------------------------------------------------------------


def make_tasks(calls: list[str], callback_url: str | None) -> list[Task]:
    tasks = []
    for call_sid in calls:
        together = threading.Barrier(len(TRACKS))
        tasks += [Task(call_sid, track, together, callback_url=callback_url) for track in TRACKS]
    return tasks


def run_path(path: str, tasks: list[Task], args: argparse.Namespace, outage: Outage) -> float:
    began = time.monotonic()
    if path == "poke":
        with ThreadPoolExecutor(args.workers) as pool:
            list(pool.map(lambda task: poke_task(task, args, outage), tasks))
    else:

        async def main() -> None:
            with ThreadPoolExecutor(args.workers) as pool:
                await asyncio.gather(*(deferred_task(task, args, outage, pool) for task in tasks))

        asyncio.run(main())
    return time.monotonic() - began


# -- the service's side -------------------------------------------------------------------------------


def started_on(sandbox: SandboxProcess, call_sid: str) -> list[dict[str, Any]]:
    """What the sandbox started on a call, with each recording's track: the service's own side."""
    from urllib.parse import quote

    url = f"{sandbox.origin}/_sandbox/calls/{quote(call_sid, safe='')}/started"
    with urllib.request.urlopen(url, timeout=60) as reply:
        return list(json.load(reply)["started"])


def service_view(tasks: list[Task], args: argparse.Namespace, sandbox: SandboxProcess) -> dict[str, Any]:
    """Every recording of the path's calls, and each returned recording, read back with the faults off."""
    from telnyx_provider.hooks.recording import RecordingHook

    local = threading.local()

    def hook() -> Any:
        if not hasattr(local, "hook"):
            local.hook = RecordingHook(CONN_ID)
        return local.hook

    calls = sorted({task.call_sid for task in tasks})
    returned = sorted({task.recording["sid"] for task in tasks if task.recording})
    time.sleep(args.list_lag + 0.5)  # every recording is in the lists by now
    with ThreadPoolExecutor(16) as pool:
        by_call = dict(
            zip(calls, pool.map(lambda call: hook().list_call_recordings(call), calls), strict=True)
        )
        by_sid = dict(zip(returned, pool.map(lambda sid: hook().get_recording(sid), returned), strict=True))
        truth = dict(zip(calls, pool.map(lambda call: started_on(sandbox, call), calls), strict=True))
    track_of = {item["sid"]: item["track"] for started in truth.values() for item in started}
    return {"by_call": by_call, "by_sid": by_sid, "truth": truth, "track_of": track_of}


def judge(tasks: list[Task], view: dict[str, Any]) -> dict[str, int]:
    """Wrong adoptions, lost recordings and duplicates, from the service's side."""
    # Tracks as the sandbox started them: fetch and list replies have no track (Telnyx's schema).
    per_call_track: Counter[tuple[str, str]] = Counter(
        (call, item["track"]) for call, started in view["truth"].items() for item in started
    )
    sid_owners = Counter(task.recording["sid"] for task in tasks if task.recording)
    figures = Counter()
    for task in tasks:
        if task.recording is None:
            figures["no recording returned"] += 1
            continue
        seen = view["by_sid"][task.recording["sid"]]
        figures["other call"] += seen.get("call_sid") != task.call_sid
        figures["other track"] += view["track_of"].get(task.recording["sid"]) != task.track
        figures["shared with another task"] += sid_owners[task.recording["sid"]] > 1
        figures["not completed"] += seen.get("status") != "completed"
    figures["wrong adoptions"] = (
        figures["other call"] + figures["other track"] + figures["shared with another task"]
    )
    missing = sum(per_call_track[(task.call_sid, task.track)] == 0 for task in tasks)
    figures["call x track never recorded"] = missing
    figures["lost"] = figures["no recording returned"] + figures["not completed"] + missing
    figures["duplicates"] = sum(n > 1 for (call, track), n in per_call_track.items() if track in TRACKS)
    figures["recordings on the service"] = sum(per_call_track.values())
    return dict(figures)


# -- figures ------------------------------------------------------------------------------------------


def _delta(after: dict[str, Any], before: dict[str, Any], key: str) -> Counter[str]:
    a, b = after.get(key, {}), before.get(key, {})
    return Counter({name: a.get(name, 0) - b.get(name, 0) for name in a})


def _slashed(counts: Counter[str] | dict[str, Any], names: tuple[str, ...]) -> str:
    return " / ".join(str(round(counts.get(name, 0), 1)) for name in names)


RETRY_REASONS = ("HTTP 429", "HTTP 500", "HTTP 503", "HTTP 504", "no reply")
ROUTES = ("POST /Calls/{call_sid}/Recordings", "GET /Calls/{call_sid}/Recordings", "GET /Recordings/{sid}")


def summarize(
    path: str,
    tasks: list[Task],
    judged: dict[str, int],
    wall: float,
    before: dict[str, Any],
    after: dict[str, Any],
    tally: Tally,
    outage: Outage,
) -> dict[str, Any]:
    """The figures of one path, as ``{label: value}`` in the order they are shown."""
    routes, faults = _delta(after, before, "requests_by_route"), _delta(after, before, "faults_injected")
    latencies = sorted(task.ended - task.began for task in tasks if task.ended is not None)
    outage_seconds = outage.window[1] - outage.window[0] if outage.window else 0.0

    def in_outage(moment: float) -> bool:
        """During the outage, or within one retry budget (60 s) after it: a request it made fail."""
        return outage.window is not None and outage.window[0] <= moment <= outage.window[1] + 60

    return {
        "path": path,
        "calls / recordings asked (two tracks per call)": f"{len(tasks) // 2} / {len(tasks)}",
        "completed recordings returned": sum(
            bool(t.recording) and t.recording.get("status") == "completed" for t in tasks
        ),
        "**wrong adoptions** (other call / other track / same recording as another task)": judged[
            "wrong adoptions"
        ],
        "wrong adoptions: other call / other track / shared": _slashed(
            judged, ("other call", "other track", "shared with another task")
        ),
        "**lost** (no completed recording of its own)": judged["lost"],
        "**duplicates** (call x track recorded more than once)": judged["duplicates"],
        "recordings on the service / asked": f"{judged['recordings on the service']} / {len(tasks)}",
        "**waits ended by the outage** (tasks whose wait gave up in it)": sum(
            bool(t.failed_waits) and in_outage(t.failed_waits[0]) for t in tasks
        ),
        "waits that gave up outside the outage": sum(
            bool(t.failed_waits) and not in_outage(t.failed_waits[0]) for t in tasks
        ),
        "outage (every request a 503), s": round(outage_seconds, 1),
        "failed tries (retried): before / after the recording existed": (
            f"{sum(t.failed_starts for t in tasks)} / {sum(len(t.failed_waits) for t in tasks)}"
        ),
        "**ambiguity errors** (AmbiguousStartError raised by a try)": sum(t.ambiguous for t in tasks),
        "uncertain starts refused (UncertainStartError: may have gone through, not sent again)": sum(
            t.uncertain for t in tasks
        ),
        "tasks needing more than one try": sum(t.tries > 1 for t in tasks),
        "requests: start / list call's recordings / get recording / total": " / ".join(
            [
                *(str(routes[route]) for route in ROUTES),
                str(after["requests_total"] - before["requests_total"]),
            ]
        ),
        "faults injected: " + " / ".join(FAULT_KINDS): _slashed(faults, FAULT_KINDS),
        "**retries made** (logged warnings)": sum(tally.retries.values()),
        "retries by reason: 429 / 500 / 503 / 504 / no reply": _slashed(tally.retries, RETRY_REASONS),
        "waited as the service asked / in backoff, s": _slashed(tally.waited, ("asked", "backoff")),
        **{label: tally.messages[label] for label in Tally.MESSAGES.values()},
        "first try to final recording, p50 / p95, s": (
            f"{statistics.median(latencies):.1f} / {latencies[int(0.95 * (len(latencies) - 1))]:.1f}"
            if latencies
            else "-"
        ),
        "wall time, s": round(wall, 1),
    }


def describe(result: dict[str, Any]) -> list[str]:
    labels = {key: key.replace("**", "") for key in result if key != "path"}
    width = max(len(label) for label in labels.values())
    return [f"  {label:<{width}}  {result[key]}" for key, label in labels.items()]


def markdown(args: argparse.Namespace, command: str, results: list[dict[str, Any]], total: float) -> str:
    rows = [key for key in results[0] if key != "path"]
    lines = [
        "# Soak: two recordings per call in a harsh world",
        "",
        "Produced by `benchmarks/soak_faults.py` (see its docstring); docs/guides/exactly-once.md carries the"
        " main rows.",
        "",
        "```bash",
        command,
        "```",
        "",
        "Sandbox in its own process on 127.0.0.1, spec-shaped (`strict_schema`, its default: no `track` in "
        "fetch or list replies): "
        f"{args.fault_rate:.0%} of `/v2` requests faulted, "
        f"uniformly among {', '.join(FAULT_KINDS)} (429 with `Retry-After: {args.retry_after}`, 504 after "
        f"the request was carried out, slow = {args.slow_seconds:g} s); its clock {args.clock_skew:+g} s off "
        f"ours; new recordings out of the lists for {args.list_lag:g} s; list pages of at most "
        f"{args.max_page_size}; a {args.outage:g} s outage (every request a 503) once half the tasks had "
        f"begun. {args.calls} calls per path, two `StartCallRecordingOperator` tasks per call (inbound and "
        f"outbound track, first tries started together), recordings of {args.recording_seconds:g} s, polls "
        f"every {args.poll_interval:g} s, task retries after {args.retry_delay:g} s (up to "
        f"{args.task_tries} tries) with the task state store of Airflow 3.3; {args.workers} worker threads; "
        f"connection without extra (default retry policy: 8 retries, 60 s per request). Machine: "
        f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs. Total wall "
        f"time {total:.0f} s.",
        "",
        "| | " + " | ".join(r["path"] for r in results) + " |",
        "| --- | " + " | ".join("---" for _ in results) + " |",
    ]
    for row in rows:
        cells = [f"**{r[row]}**" if row.startswith("**") else str(r[row]) for r in results]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    lines += ["", *NOTES]
    return "\n".join(lines) + "\n"


NOTES = [
    "Reading the figures:",
    "",
    "- Wrong adoptions, lost and duplicates are read from the service once the path is done, with the "
    "faults off: every page of every call's recordings (track, call) and every recording a task returned. "
    "None of them comes from the client's own account of what it did.",
    "- Fetch and list replies carry no `track` (Telnyx's schema), so tracks are judged from the sandbox's "
    "own record of what it started (`/_sandbox/calls/{call_sid}/started`).",
    "- **exact**: each start's status callback goes to the provider's receiver (served here on "
    "loopback), each POST attempt with a token of its own; a start whose reply was lost adopts the "
    "recording a signed callback with its token named, or sends again with a new token when none came "
    "(a late recording of the earlier attempt is stopped as superseded).",
    "- **default**: no token. Both tracks are one-track starts (`inbound`, `outbound`) on the same call, "
    "which no visible field tells apart: a start whose reply was lost never adopts; it raises "
    "`AmbiguousStartError` (a new recording that may be its own or the other track's) or "
    "`UncertainStartError` (nothing proven, not sent again). Its *lost* tasks are those refusals: the "
    "recording may exist, but it is not claimed.",
    "- *Waits ended by the outage*: tries whose wait gave up while the service was down (a poke wait "
    "raising after its retry budget, a trigger's `error` event). The task retry then resumes the same "
    "recording from the task state store, so nothing is lost or duplicated, but the task went through a "
    "failed try.",
    "- Each retry is one warning in the log, counted here from its `telnyx_retry` extra; faults are the "
    "sandbox's own count. Most retries are the 503s of the outage.",
]


# -- main ---------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--calls", type=int, default=1000, help="calls per path, two recordings each (default 1000)")
    add("--paths", default=",".join(PATHS), help="comma-separated among poke, deferred (default both)")
    add("--modes", default=",".join(MODES), help="comma-separated among exact, default (default both)")
    add("--fault-rate", type=float, default=0.3, help="fraction of API requests faulted (default 0.3)")
    add("--outage", type=float, default=90.0, help="seconds of outage mid-path (default 90)")
    add("--clock-skew", type=float, default=30.0, help="seconds the service's clock is off (default 30)")
    add("--list-lag", type=float, default=2.0, help="seconds a new recording stays out of lists (default 2)")
    add("--max-page-size", type=int, default=2, help="largest list page served (default 2)")
    add("--workers", type=int, default=100, help="threads running tries (default 100)")
    add("--poll-interval", type=float, default=1.0, help="seconds between polls (default 1)")
    add("--recording-seconds", type=float, default=3.0, help="length of each recording (default 3)")
    add("--retry-after", type=int, default=1, help="Retry-After of injected 429s (default 1)")
    add("--slow-seconds", type=float, default=1.0, help="delay of slow replies (default 1)")
    add("--task-tries", type=int, default=5, help="tries per task, as retries=4 would give (default 5)")
    add("--retry-delay", type=float, default=5.0, help="seconds before a task retry (default 5)")
    add("--wait-timeout", type=float, default=900.0, help="the operator's timeout, s (default 900)")
    add("--seed", type=int, default=2026, help="seed of the sandbox's fault generator")
    add("--show-errors", type=int, default=5, help="failed tries to print in full (default 5)")
    add("--markdown", type=Path, help="also write the figures to this Markdown file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    paths = [path.strip() for path in args.paths.split(",") if path.strip()]
    if not paths or set(paths) - set(PATHS):
        raise SystemExit(f"--paths: choose among {', '.join(PATHS)}")
    modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    if not modes or set(modes) - set(MODES):
        raise SystemExit(f"--modes: choose among {', '.join(MODES)}")
    runs = [(path, mode) for mode in modes for path in paths]
    given = sys.argv[1:] if argv is None else argv
    command = " ".join(["python benchmarks/soak_faults.py", shlex.join(given)]).strip()
    home = Path(tempfile.mkdtemp(prefix="telnyx-soak-"))
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        }
    )
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))  # stop the sandbox on the way out
    print(f"Starting the sandbox with {len(runs) * args.calls} calls...", file=sys.stderr, flush=True)
    sandbox = SandboxProcess(len(runs) * args.calls, sandbox_options(args))
    tally = Tally()
    results = []
    began = time.monotonic()
    receiver = None
    try:
        conn = {**json.loads(sandbox.conn_json()), "extra": json.dumps({"public_key": sandbox.public_key})}
        os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = json.dumps(conn)
        import telnyx_provider.operators.recording  # noqa: F401 - imports Airflow, which sets up logging

        quiet_logs(tally)
        if "exact" in modes:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
            from tests.receiver_app import ReceiverServer  # the real receiver app on uvicorn, loopback

            receiver = ReceiverServer().start()
        for number, (path, mode) in enumerate(runs):
            calls = sandbox.call_sids[number * args.calls : (number + 1) * args.calls]
            callback = f"{receiver.callback_url}?conn_id={CONN_ID}" if mode == "exact" and receiver else None
            tasks = make_tasks(calls, callback)
            print(
                f"{path}, {mode}: {len(tasks)} recordings on {len(calls)} calls...",
                file=sys.stderr,
                flush=True,
            )
            tally.reset()
            set_faults(sandbox, args.fault_rate, FAULT_KINDS)
            before = sandbox.stats()
            outage = Outage(sandbox, args, trigger=len(tasks) // 2)
            try:
                wall = run_path(path, tasks, args, outage)
            finally:
                outage.finish()
            after = sandbox.stats()
            set_faults(sandbox, 0.0, FAULT_KINDS)
            judged = judge(tasks, service_view(tasks, args, sandbox))
            results.append(summarize(f"{path}, {mode}", tasks, judged, wall, before, after, tally, outage))
            errors = Counter(error.split(":")[0] for task in tasks for error in task.errors)
            print(f"  failed tries by error type: {dict(errors)}", file=sys.stderr, flush=True)
            for error in [error for task in tasks for error in task.errors][: args.show_errors]:
                print(f"    {error}", file=sys.stderr, flush=True)
    finally:
        if receiver is not None:
            receiver.stop()
        sandbox.stop()
    total = time.monotonic() - began
    print(
        f"\nSoak: {args.calls} calls per path, two recordings each, {args.fault_rate:.0%} of requests failing"
    )
    print(f"  command: {command}")
    for result in results:
        print(f"\n{result['path']}")
        print("\n".join(describe(result)))
    # Wrong adoptions and duplicates count everywhere; in default mode a lost reply whose recording cannot
    # be proven the task's is refused (an ambiguity error): lost there is the documented price, not a fault.
    bad = sum(
        result[key]
        for result in results
        for key in result
        if key.startswith(("**wrong", "**duplicates"))
        or (result["path"].endswith("exact") and key.startswith(("**lost", "**waits ended")))
    )
    print(f"\nTotal wall time {total:.0f} s; wrong + duplicates (+ lost, waits ended if exact): {bad}.")
    if args.markdown:
        args.markdown.write_text(markdown(args, command, results, total))
        print(f"Figures written to {args.markdown}")
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
