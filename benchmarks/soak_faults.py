"""Soak: start and await 1,000 recordings through each path while 30 % of API requests fail.

Prints figures; it is not a test. The TeXML sandbox runs in its own process
(``python -m telnyx_provider.sandbox``) on 127.0.0.1 with fault injection on every ``/v2`` request: 429
with ``Retry-After``, 500, 503, connection resets (half of them *after* the request was carried out, so the
reply of a start that really happened is lost) and slow replies. Recordings end by themselves
(``--recording-seconds``) and complete after the sandbox's processing delay. The connection has no extra:
the provider's default retry policy (8 retries, 60 s per request) is what is soaked.

Two paths, one after the other, each on its own calls:

* **sync hook**: ``--workers`` threads, each with its own ``RecordingHook``, do what
  ``StartCallRecordingOperator(wait_for_completion=True)`` does: ``start_call_recording``, then
  ``get_recording`` every ``--poll-interval`` until the recording is final.
* **trigger**: the same starts (threads), each followed by a ``RecordingCompletedTrigger`` rebuilt from its
  ``serialize()`` JSON and run in one asyncio event loop, as the triggerer does.

When a request still fails after its retries, the script does what Airflow would do next, and counts it:
a failed start is a task retry (it adopts what the lost start created, else starts again), a failed poll is
the next poke, a trigger ``error`` event is a re-deferral. Reported per path: recordings completed, lost,
duplicate starts per call (from the sandbox's own counts), retries by reason, seconds waited as the service
asked (``Retry-After``) and in backoff, adoptions, faults injected by kind, requests, wall time.

    python benchmarks/soak_faults.py                      # 1,000 recordings per path, a few minutes
    python benchmarks/soak_faults.py --recordings 100     # a quick look
    python benchmarks/soak_faults.py --markdown benchmarks/SOAK.md   # also write the figures as Markdown
"""

from __future__ import annotations

import argparse
import asyncio
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
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sandbox_process import SandboxProcess  # benchmarks/ is on sys.path when a script runs

HERE = Path(__file__).resolve().parent
CONN_ID = "telnyx_soak"
FAULT_KINDS = ("429", "500", "503", "reset", "slow")
PROCESSING_DELAY = 0.5
TASK_TRIES = 3  # a task's tries (the first and two retries), as a DAG would set ``retries=2``


# -- the sandbox process ------------------------------------------------------------------------------


def sandbox_options(args: argparse.Namespace) -> list[str]:
    """CLI flags: recording length, processing delay and the faults to inject."""
    return [
        "--recording-seconds",
        str(args.recording_seconds),
        "--processing-delay",
        str(PROCESSING_DELAY),
        "--fault-rate",
        str(args.fault_rate),
        "--faults",
        ",".join(FAULT_KINDS),
        "--retry-after",
        str(args.retry_after),
        "--slow-seconds",
        str(args.slow_seconds),
        "--seed",
        str(args.seed),
    ]


# -- counting what the provider logs ------------------------------------------------------------------


class Tally(logging.Handler):
    """Counts the provider's retry warnings (by reason and wait) and adoptions, silently.

    A retry logged from the event loop's thread is a trigger's; any other is a hook's (starts, polls).
    """

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.loop_thread: int | None = None
        self._counting = threading.Lock()  # not ``self.lock``: that is the Handler's own lock
        self.reset()

    def reset(self) -> None:
        self.retries: dict[str, Counter[str]] = {"hook": Counter(), "trigger": Counter()}
        self.waited: dict[str, Counter[str]] = {"hook": Counter(), "trigger": Counter()}
        self.adoptions = 0
        self.resent_starts = 0
        self.timed_out_starts = 0

    def emit(self, record: logging.LogRecord) -> None:
        retry = getattr(record, "telnyx_retry", None)
        with self._counting:
            if retry is not None:
                side = "trigger" if record.thread == self.loop_thread else "hook"
                self.retries[side][retry["reason"]] += 1
                self.waited[side]["asked" if retry["asked"] else "backoff"] += retry["wait"]
                return
            message = record.getMessage()
            if message.startswith("Adopting recording"):
                self.adoptions += 1
            elif "sending the start again" in message:
                self.resent_starts += 1


def quiet_provider_logs(tally: Tally) -> None:
    """Route the provider's logs to the tally only (thousands of retry warnings would drown the figures)."""
    for name in ("telnyx_provider", "telnyx_provider.retry", "telnyx_provider.hooks.recording"):
        logger = logging.getLogger(name)
        logger.handlers = [tally]
        logger.propagate = False
        logger.setLevel(logging.INFO)


# -- one recording, the way Airflow would drive it ------------------------------------------------------


@dataclass
class Outcome:
    """What happened to one recording."""

    call_sid: str
    recording_sid: str | None = None
    final_status: str | None = None
    started_at: float = 0.0
    final_at: float | None = None
    start_task_retries: int = 0
    failed_polls: int = 0
    trigger_errors: int = 0
    error: str | None = None

    @property
    def completed(self) -> bool:
        return self.final_status == "completed"


@dataclass
class Starter:
    """Starts recordings as ``StartCallRecordingOperator`` does, one ``RecordingHook`` per thread."""

    local: threading.local = field(default_factory=threading.local)

    def hook(self) -> Any:
        from telnyx_provider.hooks.recording import RecordingHook

        if not hasattr(self.local, "hook"):
            self.local.hook = RecordingHook(CONN_ID)
        return self.local.hook

    def start(self, outcome: Outcome) -> dict[str, Any] | None:
        """Start (or, on a task retry, adopt) the recording of ``outcome.call_sid``."""
        from telnyx_provider.errors import TelnyxApiError

        hook = self.hook()
        first_try = datetime.now(timezone.utc)
        outcome.started_at = time.time()
        for task_try in range(TASK_TRIES):
            try:
                if task_try:
                    outcome.start_task_retries += 1
                    adopted = hook.find_recording_started_since(
                        outcome.call_sid, first_try, active_only=False
                    )
                    if adopted is not None:
                        return dict(adopted)
                return dict(hook.start_call_recording(outcome.call_sid, play_beep=False))
            except TelnyxApiError as error:
                outcome.error = str(error)
        return None


def sync_path(call_sid: str, starter: Starter, poll_interval: float, deadline: float) -> Outcome:
    """Start, then poll ``get_recording`` until final: ``wait_for_completion=True`` without deferring."""
    from telnyx_provider.errors import TelnyxApiError
    from telnyx_provider.models import Verdict, assess_recording

    outcome = Outcome(call_sid)
    recording = starter.start(outcome)
    if recording is None:
        return outcome
    outcome.recording_sid = recording["sid"]
    hook = starter.hook()
    while time.time() < deadline:
        try:
            recording = hook.get_recording(outcome.recording_sid)
        except TelnyxApiError as error:  # the next poke looks again
            outcome.failed_polls += 1
            outcome.error = str(error)
        else:
            verdict = assess_recording(recording).verdict
            if verdict is not Verdict.WAIT:
                outcome.final_status, outcome.final_at = recording.get("status"), time.time()
                return outcome
        time.sleep(poll_interval)
    return outcome


async def trigger_path(
    call_sid: str, starter: Starter, pool: ThreadPoolExecutor, poll_interval: float, deadline: float
) -> Outcome:
    """Start in a thread, then wait with a ``RecordingCompletedTrigger`` in this event loop."""
    from telnyx_provider.triggers.recording import RecordingCompletedTrigger

    outcome = Outcome(call_sid)
    recording = await asyncio.get_running_loop().run_in_executor(pool, starter.start, outcome)
    if recording is None:
        return outcome
    outcome.recording_sid = recording["sid"]
    trigger = RecordingCompletedTrigger(
        recording["sid"], telnyx_conn_id=CONN_ID, poll_interval=poll_interval, deadline=deadline
    )
    for _ in range(TASK_TRIES):
        _, kwargs = trigger.serialize()  # as the triggerer does: rebuilt from the stored JSON
        rebuilt = RecordingCompletedTrigger(**json.loads(json.dumps(kwargs)))
        event = await anext(rebuilt.run())
        status = event.payload["status"]
        if status == "error":  # the task would fail and be retried: it defers again
            outcome.trigger_errors += 1
            outcome.error = event.payload.get("message")
            continue
        if status in ("success", "failed"):
            outcome.final_status = event.payload["recording"].get("status")
            outcome.final_at = time.time()
        return outcome
    return outcome


# -- the two phases -----------------------------------------------------------------------------------


def run_sync(calls: list[str], args: argparse.Namespace) -> tuple[list[Outcome], Starter, float]:
    starter = Starter()
    deadline = time.time() + args.time_limit
    began = time.monotonic()
    with ThreadPoolExecutor(args.workers) as pool:
        outcomes = list(pool.map(lambda c: sync_path(c, starter, args.poll_interval, deadline), calls))
    return outcomes, starter, time.monotonic() - began


def run_triggers(
    calls: list[str], args: argparse.Namespace, tally: Tally
) -> tuple[list[Outcome], Starter, float]:
    starter = Starter()
    deadline = time.time() + args.time_limit

    async def main() -> list[Outcome]:
        tally.loop_thread = threading.get_ident()
        with ThreadPoolExecutor(args.workers) as pool:
            return list(
                await asyncio.gather(
                    *(trigger_path(c, starter, pool, args.poll_interval, deadline) for c in calls)
                )
            )

    began = time.monotonic()
    outcomes = asyncio.run(main())
    return outcomes, starter, time.monotonic() - began


# -- figures ------------------------------------------------------------------------------------------


def _delta(after: dict[str, Any], before: dict[str, Any], key: str) -> Counter[str]:
    a, b = after.get(key, {}), before.get(key, {})
    return Counter({name: a.get(name, 0) - b.get(name, 0) for name in a})


def _slashed(counts: Counter[str], names: tuple[str, ...]) -> str:
    return " / ".join(str(counts.get(name, 0)) for name in names)


RETRY_REASONS = ("HTTP 429", "HTTP 500", "HTTP 503", "no reply")


def _by_reason(counts: Counter[str]) -> Counter[str]:
    """Retry reasons with every "no reply (...)" folded into "no reply"."""
    folded: Counter[str] = Counter()
    for reason, count in counts.items():
        folded["no reply" if reason.startswith("no reply") else reason] += count
    return folded


def summarize(
    name: str,
    outcomes: list[Outcome],
    wall: float,
    before: dict[str, Any],
    after: dict[str, Any],
    tally: Tally,
) -> dict[str, Any]:
    """The figures of one path, as ``{label: value}`` in the order they are shown."""
    calls = {o.call_sid for o in outcomes}
    starts = {call: n for call, n in after["starts_per_call"].items() if call in calls}
    latencies = sorted(o.final_at - o.started_at for o in outcomes if o.final_at is not None)
    routes = _delta(after, before, "requests_by_route")
    faults = _delta(after, before, "faults_injected")
    hook_retries, trigger_retries = _by_reason(tally.retries["hook"]), _by_reason(tally.retries["trigger"])
    retries = sum(hook_retries.values()) + sum(trigger_retries.values())
    return {
        "path": name,
        "recordings started and awaited": len(outcomes),
        "completed": sum(o.completed for o in outcomes),
        "ended otherwise (absent, failed)": sum(
            o.final_status is not None and not o.completed for o in outcomes
        ),
        "**lost**": sum(o.final_status is None for o in outcomes),
        "**calls recorded more than once** (sandbox's starts per call)": sum(n > 1 for n in starts.values()),
        "calls never started": len(calls) - len(starts),
        "requests: start / get recording / list call's recordings / total": " / ".join(
            [
                str(routes["POST /Calls/{call_sid}/Recordings"]),
                str(routes["GET /Recordings/{sid}"]),
                str(routes["GET /Calls/{call_sid}/Recordings"]),
                str(after["requests_total"] - before["requests_total"]),
            ]
        ),
        "faults injected: 429 / 500 / 503 / reset / slow": _slashed(faults, FAULT_KINDS),
        "resets after the request was carried out (reply lost)": after["resets_after_handling"]
        - before["resets_after_handling"],
        "**retries made** (logged warnings)": retries,
        "retries by reason: 429 / 500 / 503 / no reply": _slashed(
            hook_retries + trigger_retries, RETRY_REASONS
        ),
        "retries by the trigger's async client (polls)": sum(trigger_retries.values()),
        "faults with no logged retry (slow replies aside)": sum(faults.values()) - faults["slow"] - retries,
        "**waited as the service asked** (Retry-After), s": round(
            sum(w["asked"] for w in tally.waited.values()), 1
        ),
        "waited in backoff, s": round(sum(w["backoff"] for w in tally.waited.values()), 1),
        "lost start replies adopted (no second recording)": tally.adoptions,
        "failed starts sent again (nothing had started)": tally.resent_starts,
        "starts failed after all retries (task retries)": sum(o.start_task_retries for o in outcomes),
        "polls failed after all retries (next poke)": sum(o.failed_polls for o in outcomes),
        "trigger error events (re-deferred)": sum(o.trigger_errors for o in outcomes),
        "start to final, p50 / p95, s": (
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
        "# Soak: recordings under 30 % faults",
        "",
        "Produced by `benchmarks/soak_faults.py` (see its docstring); copy the table into the README.",
        "",
        "```bash",
        command,
        "```",
        "",
        f"Sandbox in its own process on 127.0.0.1: {args.fault_rate:.0%} of `/v2` requests faulted, "
        f"uniformly among {', '.join(FAULT_KINDS)} (429 with `Retry-After: {args.retry_after}`, slow = "
        f"{args.slow_seconds:g} s, half the resets after the request was carried out); recordings last "
        f"{args.recording_seconds:g} s and complete {PROCESSING_DELAY:g} s later; polls every "
        f"{args.poll_interval:g} s; {args.workers} worker threads; connection without extra (default retry "
        f"policy: 8 retries, 60 s per request). Machine: {platform.python_implementation()} "
        f"{platform.python_version()}, {os.cpu_count()} CPUs. Total wall time {total:.0f} s.",
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
    "- *Lost* counts recordings not seen final by the end; *calls recorded more than once* comes from the "
    "sandbox's own count of recordings started per call, not from the client.",
    "- Every start goes through `RecordingHook.start_call_recording`, in both paths. A start whose reply "
    "was lost (a reset after the sandbox carried it out) is found by listing the call's recordings and "
    "*adopted*; after a failure that started nothing (a reset before, a 500, a 503) it is sent again; after "
    "a 429 it is sent again without listing.",
    "- Each retry is one warning in the log, counted here from those warnings (their `telnyx_retry` extra: "
    "reason, wait, whether the service asked for it); the sandbox counts the faults it injected, so *faults "
    "with no logged retry* checks one against the other. A slow reply arrives within the read timeout "
    "(30 s): it costs time, not a retry.",
    "- *Faults with no logged retry*, when not 0 on the trigger path: the async client's HTTP library "
    "(aiohttp) re-sends a GET once by itself after a reset, before the retry policy sees a failure, so that "
    "attempt is neither logged nor counted.",
    "- *Waited as the service asked* is the sum of the `Retry-After` waits (one per 429); *backoff* is the "
    "exponential backoff with full jitter the policy chose for the other failures.",
    "- The trigger path is faster because its threads only start recordings; the waiting happens in one "
    "event loop, while on the sync path each thread also polls until its recording is final.",
]


# -- main ---------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recordings", type=int, default=1000, help="recordings per path (default 1000)")
    parser.add_argument("--fault-rate", type=float, default=0.3, help="fraction of API requests faulted")
    parser.add_argument("--workers", type=int, default=32, help="threads starting and polling (default 32)")
    parser.add_argument("--poll-interval", type=float, default=1.0, help="seconds between polls")
    parser.add_argument("--recording-seconds", type=float, default=2.0, help="length of each recording")
    parser.add_argument("--retry-after", type=int, default=1, help="Retry-After of injected 429s")
    parser.add_argument("--slow-seconds", type=float, default=1.0, help="delay of slow replies")
    parser.add_argument("--seed", type=int, default=2026, help="seed of the sandbox's fault generator")
    parser.add_argument("--time-limit", type=float, default=600, help="seconds per path before giving up")
    parser.add_argument("--markdown", type=Path, help="also write the figures to this Markdown file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
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
    print(f"Starting the sandbox with {2 * args.recordings} calls...", file=sys.stderr, flush=True)
    sandbox = SandboxProcess(2 * args.recordings, sandbox_options(args))
    tally = Tally()
    results = []
    began = time.monotonic()
    try:
        os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = sandbox.conn_json()
        import telnyx_provider.hooks.recording  # noqa: F401 - imports Airflow, which sets up logging

        quiet_provider_logs(tally)
        calls = sandbox.call_sids
        phases = [("sync hook", calls[: args.recordings]), ("trigger", calls[args.recordings :])]
        for name, phase_calls in phases:
            print(f"{name}: {len(phase_calls)} recordings...", file=sys.stderr, flush=True)
            tally.reset()
            before = sandbox.stats()
            if name == "trigger":
                outcomes, _, wall = run_triggers(phase_calls, args, tally)
            else:
                outcomes, _, wall = run_sync(phase_calls, args)
            after = sandbox.stats()
            results.append(summarize(name, outcomes, wall, before, after, tally))
        final = sandbox.stats()
    finally:
        sandbox.stop()
    total = time.monotonic() - began
    print(f"\nSoak: {args.recordings} recordings per path, {args.fault_rate:.0%} of API requests faulted")
    print(f"  command: {command}")
    for result in results:
        print(f"\n{result['path']} path")
        print("\n".join(describe(result)))
    duplicates = sum(n > 1 for n in final["starts_per_call"].values())
    lost = sum(r["**lost**"] for r in results)
    print(
        f"\nAll paths: {sum(r['completed'] for r in results)} completed, {lost} lost, {duplicates} calls "
        f"recorded more than once; the sandbox holds {final['recordings']} recordings for "
        f"{len(final['starts_per_call'])} started calls; total wall time {total:.0f} s."
    )
    if args.markdown:
        args.markdown.write_text(markdown(args, command, results, total))
        print(f"Figures written to {args.markdown}")
    return 0 if lost == 0 and duplicates == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
