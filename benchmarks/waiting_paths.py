"""Benchmark: what waiting for 1,000 concurrent 5-minute calls costs on each path, side by side in one run.

Prints figures and, with ``--markdown``, writes them to a Markdown file; it is not a test. Every server
listens on 127.0.0.1 and every phase is bounded in time.

Each phase gets a fresh TeXML sandbox in its own process (``python -m telnyx_provider.sandbox``), whose
recordings end by themselves ``--length`` seconds after they start (calls of 5 minutes). N recordings are
started through the real hook (each start is a snapshot of the call's recordings and a POST: **two requests,
counted**), then waited for until every one is reported finished:

- ``own``: deferred waits polling on their own, one GET per wait per interval (connection extra
  ``shared_polls`` false; what deferrable sensors and operators did before shared polls);
- ``shared``: deferred waits with shared polls (the default): one listing of the account per interval, or
  GETs, whichever the poll counts cheaper;
- ``polling``: one ``RecordingsFinishedTrigger`` (the polling event trigger), started before the starts;
- ``callbacks``: the recordings started with ``RecordingStatusCallback`` pointing at the provider's receiver
  (its FastAPI app on uvicorn, verifying the sandbox's Ed25519 signatures); nothing polls;
- ``shared-busy``: shared polls in an account busy with recordings that are not ours (``--foreign`` times as
  many, started interleaved with ours: every listing holds them too);
- ``own-few`` / ``shared-few``: ``--few`` waits among as many foreign recordings: listing costs more pages
  than there are waits, so the poll must fetch one by one and cost no more than polling on one's own.

The deferred waits are rebuilt from their ``serialize()`` output and run gathered in this process's event
loop, as the triggerer runs them. Reported per phase: requests per finished recording (starts included),
waiting requests per wait per interval, the time from a recording becoming final (the sandbox's clock, same
machine) to its event (p50, p95), and for the deferred phases the process's CPU time per request and per
look (one wait looked at once). Our callers hang up ``--length`` seconds after the waiting begins (spread over
one interval); others' calls go on. Time is compressed by ``--scale`` (default 0.1: calls of 300 s run 30 s, a
10 s interval runs 1 s); request counts do not depend on it, and times are reported in real-world seconds
(divided by the scale). Memory per wait is measured by ``waiting_at_scale.py`` (the triggers in a process of
their own).

    python benchmarks/waiting_paths.py --markdown benchmarks/WAITS.md     # ~10 minutes
    python benchmarks/waiting_paths.py --recordings 200 --phases own shared   # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import shlex
import socket
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from sandbox_process import SandboxProcess  # benchmarks/ is on sys.path when a script runs

PHASES = ("own", "shared", "polling", "callbacks", "shared-busy", "own-few", "shared-few")
START_ROUTES = ("GET /Calls/{call_sid}/Recordings", "POST /Calls/{call_sid}/Recordings")
FOREIGN_POST = "POST /Calls/{call_sid}/Recordings"
THREADS = 8
PROCESSING_DELAY = 0.2
# The targets of issue 17.
TARGET_SHARED_PER_WAIT_INTERVAL = 0.2
TARGET_CPU_MS = 0.5


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def process_cpu() -> float:
    times = os.times()
    return times.user + times.system


class World:
    """One phase's sandbox, its recordings (ours, and others' in a busy account) and its counts."""

    def __init__(self, args: argparse.Namespace, ours: int, foreign: int) -> None:
        self.sb = SandboxProcess(ours + foreign, ["--processing-delay", str(PROCESSING_DELAY)])
        self.args, self.ours, self.foreign = args, ours, foreign
        calls = list(self.sb.call_sids)
        random.Random(args.seed).shuffle(calls)
        self.our_calls = calls[:ours]
        self.foreign_calls = calls[ours:]
        self.sids: list[str] = []

    def use_connection(self, extra: dict[str, Any] | None = None) -> None:
        os.environ["AIRFLOW_CONN_TELNYX_DEFAULT"] = self.sb.conn_json(extra)

    def start(self, callback_url: str | None = None) -> float:
        """Start our recordings through the hook and the foreign ones by a bare POST, interleaved; the
        seconds it took."""
        from telnyx_provider.hooks.recording import RecordingHook

        local = threading.local()
        form = {"RecordingStatusCallbackEvent": "completed absent"}

        def ours(call_sid: str) -> str:
            if not hasattr(local, "hook"):
                local.hook = RecordingHook()
            options: dict[str, Any] = {"play_beep": False}
            if callback_url:
                options.update(
                    recording_status_callback=callback_url,
                    recording_status_callback_event=form["RecordingStatusCallbackEvent"],
                )
            return str(local.hook.start_call_recording(call_sid, **options)["sid"])

        def foreign(call_sid: str) -> None:
            url = f"{self.sb.base_url}/texml/Accounts/{self.sb.account_sid}/Calls/{quote(call_sid, safe='')}"
            request = urllib.request.Request(
                f"{url}/Recordings.json",
                data=urlencode({"PlayBeep": "false"}).encode(),
                headers={"Authorization": f"Bearer {self.sb.api_key}"},
            )
            with urllib.request.urlopen(request, timeout=60) as reply:
                reply.read()

        order = [(call, True) for call in self.our_calls] + [(call, False) for call in self.foreign_calls]
        random.Random(self.args.seed + 1).shuffle(order)
        began = time.monotonic()
        with ThreadPoolExecutor(THREADS) as pool:
            results = list(pool.map(lambda item: ours(item[0]) if item[1] else foreign(item[0]), order))
        self.sids = [sid for sid in results if sid is not None]
        return time.monotonic() - began

    def hang_up_later(self) -> threading.Thread:
        """Our callers hang up ``--length`` seconds from now, spread over one interval around it (in random
        order); others' calls go on. Returns the thread doing it."""
        args = self.args
        began, spread = time.monotonic(), args.poll * args.scale
        first = args.length * args.scale - spread / 2
        calls = list(self.our_calls)
        random.Random(args.seed + 2).shuffle(calls)

        def hang_up(call_sid: str) -> None:
            url = f"{self.sb.origin}/_sandbox/calls/{quote(call_sid, safe='')}/hangup"
            with urllib.request.urlopen(
                urllib.request.Request(url, data=b"", method="POST"), timeout=60
            ) as r:
                r.read()

        def run() -> None:
            with ThreadPoolExecutor(THREADS) as pool:
                for index, call_sid in enumerate(calls):
                    wait = began + first + index * spread / len(calls) - time.monotonic()
                    if wait > 0:
                        time.sleep(wait)
                    pool.submit(hang_up, call_sid)

        thread = threading.Thread(target=run, name="callers", daemon=True)
        thread.start()
        return thread

    def requests(self) -> dict[str, int]:
        routes: dict[str, int] = self.sb.stats()["requests_by_route"]
        return routes

    def stop(self) -> None:
        self.sb.stop()


def looks(world: World, began: float) -> int:
    """The looks one GET per wait per interval takes: from one interval after the waiting ``began`` (Unix
    time) to the first at or after the recording's completion."""
    interval = world.args.poll * world.args.scale
    completed_at: dict[str, float] = world.sb.stats()["completed_at"]
    return sum(
        max(1, math.ceil((completed_at.get(sid, began) - began) / interval - 1e-9)) for sid in world.sids
    )


def figures(
    phase: str,
    world: World,
    events: dict[str, float],
    start_requests: int,
    wait_requests: int,
    began: float,
    **extra: Any,
) -> dict[str, Any]:
    """The phase's figures from the events (sid -> arrival time) and the sandbox's counts."""
    args = world.args
    completed_at: dict[str, float] = world.sb.stats()["completed_at"]
    lags = [(at - completed_at[sid]) / args.scale for sid, at in events.items() if sid in completed_at]
    finished = sum(1 for sid in world.sids if sid in events)
    taken = looks(world, began)
    return {
        "phase": phase,
        "waits": world.ours,
        "foreign": world.foreign,
        "finished": finished,
        "start_requests": start_requests,
        "wait_requests": wait_requests,
        "per_recording": (start_requests + wait_requests) / max(1, finished),
        "looks": taken,
        "per_wait_interval": wait_requests / max(1, taken),
        "lag_p50_s": quantile(lags, 0.5),
        "lag_p95_s": quantile(lags, 0.95),
        "lag_max_s": max(lags, default=float("nan")),
        **extra,
    }


def start_counts(world: World, before: dict[str, int]) -> int:
    """Our starts' requests: the start routes' requests minus the foreign recordings' bare POSTs."""
    after = world.requests()
    made = sum(after.get(route, 0) - before.get(route, 0) for route in START_ROUTES)
    return made - len(world.foreign_calls)


def waiting_counts(world: World, before: dict[str, int]) -> int:
    after = world.requests()
    return sum(n - before.get(route, 0) for route, n in after.items())


# -- deferred waits --------------------------------------------------------------------------------------


def run_deferred(
    phase: str, args: argparse.Namespace, ours: int, foreign: int, shared: bool
) -> dict[str, Any]:
    from airflow.sdk import BaseHook

    from telnyx_provider.triggers.recording import RecordingCompletedTrigger

    world = World(args, ours, foreign)
    try:
        world.use_connection(None if shared else {"shared_polls": False})
        asyncio.run(
            BaseHook.aget_connection("telnyx_default")
        )  # the triggerer looked a connection up long ago
        before = world.requests()
        world.start()
        start_requests = start_counts(world, before)
        interval = args.poll * args.scale
        deadline = time.time() + args.length * args.scale * 3 + 120
        lines = [
            json.dumps(RecordingCompletedTrigger(sid, poll_interval=interval, deadline=deadline).serialize())
            for sid in world.sids
        ]
        triggers = [
            RecordingCompletedTrigger(**json.loads(line)[1]) for line in lines
        ]  # as the triggerer does
        events: dict[str, float] = {}
        statuses: dict[str, int] = {}

        async def wait(trigger: RecordingCompletedTrigger) -> None:
            async for event in trigger.run():
                events[trigger.recording_sid] = time.time()
                statuses[event.payload["status"]] = statuses.get(event.payload["status"], 0) + 1

        async def main() -> None:
            await asyncio.gather(*(wait(trigger) for trigger in triggers))

        waiting_before = world.requests()
        cpu, began = process_cpu(), time.time()
        callers = world.hang_up_later()
        asyncio.run(main())
        cpu = process_cpu() - cpu
        callers.join()
        wait_requests = waiting_counts(world, waiting_before)
        return figures(
            phase,
            world,
            events,
            start_requests,
            wait_requests,
            began,
            statuses=statuses,
            cpu_ms_per_request=1000 * cpu / max(1, wait_requests),
            cpu_ms_per_look=1000 * cpu / max(1, looks(world, began)),
        )
    finally:
        world.stop()


# -- the polling event trigger -----------------------------------------------------------------------------


def run_polling(args: argparse.Namespace) -> dict[str, Any]:
    from telnyx_provider.triggers.recording import RecordingsFinishedTrigger

    world = World(args, args.recordings, 0)
    try:
        world.use_connection()
        trigger = RecordingsFinishedTrigger(
            account_sid=world.sb.account_sid,
            poll_interval=args.poll * args.scale,
            overlap=120 * args.scale,
            lookback=args.length * args.scale * 4,
        )
        events: dict[str, float] = {}
        done = threading.Event()
        marks: dict[str, float] = {}
        before = world.requests()

        async def watch() -> None:
            async for event in trigger.run():
                events.setdefault(event.payload["sid"], time.time())

        async def main() -> None:
            task = asyncio.create_task(watch())
            await asyncio.sleep(0.5)  # its first listing (the baseline) comes before any start

            def starts() -> None:
                world.start()
                marks["began"] = time.time()
                world.hang_up_later().join()
                done.set()

            starter = threading.Thread(target=starts)
            starter.start()
            limit = time.monotonic() + args.length * args.scale * 3 + 300
            while not (done.is_set() and set(world.sids) <= set(events)) and time.monotonic() < limit:
                await asyncio.sleep(0.1)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            starter.join()

        asyncio.run(main())
        after = world.requests()
        start_requests = sum(after.get(route, 0) - before.get(route, 0) for route in START_ROUTES)
        wait_requests = sum(n - before.get(route, 0) for route, n in after.items()) - start_requests
        return figures("polling", world, events, start_requests, wait_requests, marks["began"])
    finally:
        world.stop()


# -- signed callbacks --------------------------------------------------------------------------------------


def run_callbacks(args: argparse.Namespace) -> dict[str, Any]:
    import tempfile

    import uvicorn
    from sqlalchemy import create_engine

    from telnyx_provider.plugins.callbacks import ReceiverSettings, create_app
    from telnyx_provider.plugins.receiver_store import ReceiverStore
    from telnyx_provider.plugins.recording_events import CallbackKey
    from telnyx_provider.signatures import load_public_key

    world = World(args, args.recordings, 0)
    events: dict[str, float] = {}
    lock = threading.Lock()

    def store(account_sid: str, extra: dict[str, str]) -> int:
        # Stands in for the metadata database (the receiver's storing is tested against Airflow's own).
        with lock:
            events.setdefault(extra["RecordingSid"], time.time())
            return len(events)

    def key_of(conn_id: str) -> CallbackKey:
        if not world.sb.public_key:
            raise ValueError("this sandbox does not sign its callbacks")
        return CallbackKey(conn_id, load_public_key(world.sb.public_key), world.sb.account_sid)

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    # The replay check's shared table in a database of its own (the receiver's is the metadata database).
    replays = ReceiverStore(
        create_engine(f"sqlite:///{tempfile.mkdtemp(prefix='telnyx-receiver-')}/state.db")
    )
    app = create_app(ReceiverSettings(connection_keys=key_of, store_event=store, store=replays))
    server = uvicorn.Server(uvicorn.Config(app, log_level="error", lifespan="off"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.02)
        world.use_connection()
        before = world.requests()
        world.start(callback_url=f"http://127.0.0.1:{sock.getsockname()[1]}/recording-status")
        start_requests = start_counts(world, before)
        waiting_before, began = world.requests(), time.time()
        callers = world.hang_up_later()
        limit = time.monotonic() + args.length * args.scale * 3 + 300
        while time.monotonic() < limit:
            stats = world.sb.stats()
            if stats["callbacks_sent"] + stats["callbacks_failed"] >= len(world.sids):
                break
            time.sleep(0.1)
        callers.join()
        wait_requests = waiting_counts(world, waiting_before)
        return figures("callbacks", world, events, start_requests, wait_requests, began)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        world.stop()


# -- report ------------------------------------------------------------------------------------------------

LABELS = {
    "own": "deferred waits, each polling on its own (one GET per wait per interval)",
    "shared": "deferred waits, shared polls (the default)",
    "polling": "polling event trigger (one `RecordingsFinishedTrigger`)",
    "callbacks": "signed status callbacks (the receiver on uvicorn)",
    "shared-busy": "shared polls, account busy with others' recordings",
    "own-few": "few waits in a busy account, each polling on its own",
    "shared-few": "few waits in a busy account, shared polls",
}


def table(results: list[dict[str, Any]], args: argparse.Namespace) -> list[str]:
    rows = [
        "| waiting by | waits (+ others' recordings) | finished | requests: starts + waiting | per finished "
        "recording | waiting requests per look (a wait, an interval) | final → event p50 / p95 | CPU per "
        "request / per look |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        cpu = (
            f"{r['cpu_ms_per_request']:.3f} / {r['cpu_ms_per_look']:.3f} ms"
            if "cpu_ms_per_look" in r
            else "-"
        )
        others = f" (+{r['foreign']:,})" if r["foreign"] else ""
        rows.append(
            f"| {LABELS[r['phase']]} | {r['waits']:,}{others} | {r['finished']:,} | "
            f"{r['start_requests']:,} + {r['wait_requests']:,} | {r['per_recording']:.3f} | "
            f"{r['per_wait_interval']:.4f} | {r['lag_p50_s']:.1f} / {r['lag_p95_s']:.1f} s | {cpu} |"
        )
    return rows


def verdicts(results: list[dict[str, Any]], args: argparse.Namespace) -> list[str]:
    """The issue's targets against this run."""
    by = {r["phase"]: r for r in results}
    lines = []

    def check(label: str, ok: bool) -> None:
        lines.append(f"- {label}: {'ok' if ok else 'MISSED'}")

    if "shared" in by:
        shared = by["shared"]
        check(
            f"shared polls ≤ {TARGET_SHARED_PER_WAIT_INTERVAL} requests per wait per interval "
            f"({args.recordings:,} waits, the account's only recordings): {shared['per_wait_interval']:.4f}",
            shared["per_wait_interval"] <= TARGET_SHARED_PER_WAIT_INTERVAL,
        )
    for busy, own in (("shared-busy", "own"), ("shared-few", "own-few")):
        if busy in by and own in by:
            a, b = by[busy], by[own]
            ratio = (
                a["per_wait_interval"] / b["per_wait_interval"] if b["per_wait_interval"] else float("nan")
            )
            check(
                f"{LABELS[busy]} never dearer than {LABELS[own]}: {a['per_wait_interval']:.4f} vs "
                f"{b['per_wait_interval']:.4f} waiting requests per wait per interval ({ratio:.2f} times)",
                a["per_wait_interval"] <= b["per_wait_interval"] * 1.02,
            )
    for phase in ("own", "shared", "shared-busy", "shared-few", "own-few", "polling", "callbacks"):
        if phase in by and args.scale != 1:
            lines.append(
                f"- {LABELS[phase]}: final → event p95 {by[phase]['lag_p95_s']:.1f} s, not judged: time is "
                "compressed, and the time requests and parsing take is not (run with --scale 1 to judge it)"
            )
        elif phase in by:
            r = by[phase]
            check(
                f"{LABELS[phase]}: events within one interval ({args.poll:g} s) of the recording becoming "
                f"final (p95 {r['lag_p95_s']:.1f} s)",
                r["lag_p95_s"] <= args.poll and r["finished"] == r["waits"],
            )
    if "own" in by:
        check(
            f"CPU per request ≤ {TARGET_CPU_MS} ms, one GET per wait: "
            f"{by['own']['cpu_ms_per_request']:.3f} ms",
            by["own"]["cpu_ms_per_request"] <= TARGET_CPU_MS,
        )
    if "shared" in by:
        check(
            f"CPU per look ≤ {TARGET_CPU_MS} ms, shared polls: {by['shared']['cpu_ms_per_look']:.3f} ms "
            f"(per request {by['shared']['cpu_ms_per_request']:.1f} ms: one request answers many looks)",
            by["shared"]["cpu_ms_per_look"] <= TARGET_CPU_MS,
        )
    return lines


MARKDOWN_TITLE = "# Waiting for 1,000 concurrent calls: requests, latency and CPU on each path\n\n"
NOTES_MARKER = "<!-- Hand-written notes below: waiting_paths.py --markdown keeps them as they are. -->"


def write_section(
    path: Path, section: str, command: str, header: str, rows: list[str], checks: list[str]
) -> None:
    """Write this run as the file's section ``section``, keeping the other sections and the notes."""
    begin, end = f"<!-- section {section} -->", f"<!-- end of section {section} -->"
    text = path.read_text() if path.exists() else MARKDOWN_TITLE
    notes = ""
    if NOTES_MARKER in text:
        text, notes = text.split(NOTES_MARKER, 1)
        notes = NOTES_MARKER + notes
    body = (
        f"{begin}\n\n```bash\n{command}\n```\n\n{header}\n\n"
        + "\n".join(rows)
        + "\n\n"
        + "\n".join(checks)
        + f"\n\n{end}\n"
    )
    if begin in text and end in text:
        text = text.split(begin, 1)[0] + body + text.split(end, 1)[1].lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + body
    path.write_text(text.rstrip("\n") + "\n\n" + notes if notes else text)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recordings", type=int, default=1000, help="concurrent calls (default %(default)s)")
    parser.add_argument("--length", type=float, default=300.0, help="call length, real-world s (%(default)s)")
    parser.add_argument("--poll", type=float, default=10.0, help="poll interval, real-world s (%(default)s)")
    parser.add_argument("--scale", type=float, default=0.1, help="benchmark s per real-world s (%(default)s)")
    parser.add_argument("--foreign", type=int, default=10, help="others' recordings per wait, busy phases")
    parser.add_argument("--few", type=int, default=20, help="waits of the few-waits phases (%(default)s)")
    parser.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES))
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--markdown", type=Path, help="also write the figures to this Markdown file")
    parser.add_argument(
        "--section", default="main", help="the part of the Markdown file this run replaces (%(default)s)"
    )
    return parser.parse_args(argv)


def run_phase(phase: str, args: argparse.Namespace) -> dict[str, Any]:
    busy = args.recordings * args.foreign
    if phase == "own":
        return run_deferred(phase, args, args.recordings, 0, shared=False)
    if phase == "shared":
        return run_deferred(phase, args, args.recordings, 0, shared=True)
    if phase == "shared-busy":
        return run_deferred(phase, args, args.recordings, busy, shared=True)
    if phase == "own-few":
        return run_deferred(phase, args, args.few, busy, shared=False)
    if phase == "shared-few":
        return run_deferred(phase, args, args.few, busy, shared=True)
    if phase == "polling":
        return run_polling(args)
    return run_callbacks(args)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
    command = shlex.join(
        ["python", "benchmarks/waiting_paths.py", *(argv if argv is not None else sys.argv[1:])]
    )
    header = (
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.2f} at the start; {args.recordings:,} calls of {args.length:g} s polled every "
        f"{args.poll:g} s, time compressed by {args.scale:g} (they ran {args.length * args.scale:g} s, "
        f"polled every {args.poll * args.scale:g} s; times below are real-world seconds)"
    )
    print(f"# {command}\n{header}", flush=True)
    results = []
    for phase in args.phases:
        began = time.monotonic()
        results.append(run_phase(phase, args))
        shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in results[-1].items()}
        print(f"{phase} ({time.monotonic() - began:.0f} s): {shown}", flush=True)
    header += f", {os.getloadavg()[0]:.2f} at the end."
    rows, checks = table(results, args), verdicts(results, args)
    print("\n" + "\n".join(rows) + "\n\n" + "\n".join(checks), flush=True)
    if args.markdown:
        write_section(args.markdown, args.section, command, header, rows, checks)
    return 0 if not any(line.endswith("MISSED") for line in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
