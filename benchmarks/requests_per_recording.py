"""Benchmark: Telnyx API requests per finished recording, waiting three ways for 1,000 recordings.

Prints figures; it is not a test. Every server listens on 127.0.0.1 and every phase is bounded in time.

Each phase gets a fresh TeXML sandbox in its own process (``python -m telnyx_provider.sandbox``), creates N
calls that hang up by themselves at spread-out times, starts one recording on each, and then counts the
requests the sandbox serves *after the starts* until every recording has been reported finished:

(a) deferrable sensors: N ``RecordingCompletedTrigger`` gathered in one event loop, as the triggerer runs
    them, each polling its own recording (``GET .../Recordings/{sid}.json``);
(b) the polling event trigger: one ``RecordingsFinishedTrigger`` listing the whole account
    (``GET .../Recordings.json?DateCreated>=...``, every page) once per interval; it runs from before the
    starts, so its listings during the starts count too;
(c) status callbacks: the recordings are started with ``RecordingStatusCallback`` pointing at the provider's
    receiver (its FastAPI app on uvicorn, verifying the sandbox's Ed25519 signatures); nothing polls.

(d) a stuck recording over a simulated week (a fake clock, no sandbox: a week does not compress into
    minutes): the polling trigger's feed (``RecordingFeed``, what decides each listing's window) lists an
    account that creates a recording every ``--week-every`` minutes, each final 5 minutes later, and one
    recording that never becomes final. Per simulated day: the largest listing, its requests (pages of
    ``--week-page-size``) and the largest saved state, with ``max_pending_age`` at its default (a day) and
    without a bound (what the trigger did before it had one).

Time is compressed by ``--scale`` (default 0.1: a 10 s poll interval runs as 1 s, recordings lasting
30-180 s as 3-18 s); request counts per recording do not depend on the compression. Scenario ``spread``:
the recordings finish over the ``--spread`` seconds after the starts (a few minutes). Scenario ``burst``: all
of them finish within one poll interval (the target's "1,000 recordings finishing per 10 s interval").

    python benchmarks/requests_per_recording.py                 # 1,000 recordings, a few minutes
    python benchmarks/requests_per_recording.py --recordings 200 --skip-sensors   # a quick look
    python benchmarks/requests_per_recording.py --stuck-week-only                 # (d) alone, ~1 minute
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shlex
import shutil
import socket
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

from sandbox_process import SandboxProcess  # benchmarks/ is on sys.path when a script runs

START_ROUTE = "POST /Calls/{call_sid}/Recordings"
TARGET_POLLING = 0.05
TARGET_CALLBACKS = 0.0
START_THREADS = 8
PROCESSING_DELAY = 0.2


def post_json(url: str, payload: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    with urllib.request.urlopen(request, timeout=30) as reply:
        return json.load(reply)


def create_calls(sb: SandboxProcess, hangups: list[float]) -> list[str]:
    with ThreadPoolExecutor(START_THREADS) as pool:
        replies = pool.map(
            lambda after: post_json(f"{sb.origin}/_sandbox/calls", {"hangup_after": after}), hangups
        )
        return [reply["call_sid"] for reply in replies]


def start_recordings(sb: SandboxProcess, calls: list[str], callback_url: str | None) -> list[str]:
    form = {"RecordingStatusCallbackEvent": "completed absent"}
    if callback_url:
        form["RecordingStatusCallback"] = callback_url

    def start(call_sid: str) -> str:
        from urllib.parse import quote, urlencode

        url = (
            f"{sb.base_url}/texml/Accounts/{sb.account_sid}/Calls/{quote(call_sid, safe='')}/Recordings.json"
        )
        request = urllib.request.Request(
            url,
            data=urlencode(form).encode(),
            headers={
                "Authorization": f"Bearer {sb.api_key}",
                "Content-Type": "application/x-www-form-urlencoded",
            },
        )
        with urllib.request.urlopen(request, timeout=30) as reply:
            return str(json.load(reply)["sid"])

    with ThreadPoolExecutor(START_THREADS) as pool:
        return list(pool.map(start, calls))


def api_requests(stats: dict[str, Any]) -> int:
    """Requests to the API routes, starts excluded."""
    return sum(n for route, n in stats["requests_by_route"].items() if route != START_ROUTE)


def hangup_times(args: argparse.Namespace, scenario: str) -> list[float]:
    rng = random.Random(args.seed)
    lead = args.lead  # benchmark seconds for the starts to finish before any recording ends
    if scenario == "burst":
        return [lead + rng.uniform(0, args.poll * args.scale) for _ in range(args.recordings)]
    low, high = 30 * args.scale, (30 + args.spread) * args.scale
    return [lead + rng.uniform(low, high) for _ in range(args.recordings)]


def new_sandbox(args: argparse.Namespace) -> SandboxProcess:
    return SandboxProcess(0, ["--processing-delay", str(PROCESSING_DELAY)])


def use_connection(sb: SandboxProcess) -> None:
    conn = json.loads(sb.conn_json())
    conn["extra"] = {"pool_size": 10}
    os.environ["AIRFLOW_CONN_TELNYX_DEFAULT"] = json.dumps(conn)


# (a) ----------------------------------------------------------------------------------------------------
def run_sensors(args: argparse.Namespace, scenario: str) -> dict[str, Any]:
    from telnyx_provider.triggers.recording import RecordingCompletedTrigger

    sb = new_sandbox(args)
    try:
        use_connection(sb)
        calls = create_calls(sb, hangup_times(args, scenario))
        sids = start_recordings(sb, calls, None)
        before = api_requests(sb.stats())
        triggers = [
            RecordingCompletedTrigger(sid, poll_interval=args.poll * args.scale, deadline=time.time() + 600)
            for sid in sids
        ]

        async def main() -> list[Any]:
            async def first(trigger: RecordingCompletedTrigger) -> Any:
                generator = trigger.run()
                try:
                    return (await generator.__anext__()).payload
                finally:
                    await generator.aclose()

            return await asyncio.gather(*(first(t) for t in triggers))

        started = time.monotonic()
        events = asyncio.run(main())
        elapsed = time.monotonic() - started
        made = api_requests(sb.stats()) - before
        finished = sum(1 for event in events if event.get("status") in ("success", "failed"))
        return {
            "kind": "(a) deferrable sensors",
            "scenario": scenario,
            "finished": finished,
            "requests": made,
            "seconds": elapsed,
        }
    finally:
        sb.stop()


# (b) ----------------------------------------------------------------------------------------------------
def run_polling(args: argparse.Namespace, scenario: str) -> dict[str, Any]:
    from telnyx_provider.triggers.recording import RecordingsFinishedTrigger

    sb = new_sandbox(args)
    try:
        use_connection(sb)
        trigger = RecordingsFinishedTrigger(
            account_sid=sb.account_sid, poll_interval=args.poll * args.scale, overlap=120 * args.scale
        )
        reported: set[str] = set()
        done = threading.Event()
        state: dict[str, Any] = {}

        async def watch() -> None:
            async for event in trigger.run():
                reported.add(event.payload["sid"])

        def starter() -> None:
            state["calls"] = create_calls(sb, hangup_times(args, scenario))
            state["sids"] = set(start_recordings(sb, state["calls"], None))
            state["start_requests"] = sb.stats()["requests_by_route"].get(START_ROUTE, 0)
            done.set()

        async def main() -> float:
            task = asyncio.create_task(watch())
            await asyncio.sleep(0.5)  # the watcher's first listing (the baseline) before any start
            thread = threading.Thread(target=starter)
            started = time.monotonic()
            thread.start()
            deadline = started + 600
            while not (done.is_set() and reported >= state["sids"]) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            thread.join()
            return time.monotonic() - started

        elapsed = asyncio.run(main())
        made = api_requests(sb.stats())
        return {
            "kind": "(b) polling event trigger",
            "scenario": scenario,
            "finished": len(reported),
            "requests": made,
            "seconds": elapsed,
        }
    finally:
        sb.stop()


# (c) ----------------------------------------------------------------------------------------------------
def run_callbacks(args: argparse.Namespace, scenario: str) -> dict[str, Any]:
    import uvicorn
    from sqlalchemy import create_engine

    from telnyx_provider.plugins.callbacks import ReceiverSettings, create_app
    from telnyx_provider.plugins.receiver_store import ReceiverStore
    from telnyx_provider.plugins.recording_events import CallbackKey
    from telnyx_provider.signatures import load_public_key

    sb = new_sandbox(args)
    public_key = getattr(sb, "public_key", None)
    stored: set[str] = set()
    lock = threading.Lock()

    def store(account_sid: str, extra: dict[str, str]) -> int:
        # Stands in for the metadata database (the receiver's storing is tested against Airflow's own).
        with lock:
            stored.add(extra["RecordingSid"])
            return len(stored)

    def key_of(conn_id: str) -> CallbackKey:
        if not public_key:
            raise ValueError("this sandbox does not sign its callbacks")
        return CallbackKey(conn_id, load_public_key(public_key), sb.account_sid)

    # The replay check's shared table in a database of its own (the receiver's is the metadata database).
    state_dir = tempfile.mkdtemp(prefix="telnyx-receiver-state-")
    replays = ReceiverStore(create_engine(f"sqlite:///{state_dir}/state.db"))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(ReceiverSettings(connection_keys=key_of, store_event=store, store=replays)),
            log_level="error",
            lifespan="off",
        )
    )
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.02)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/recording-status"
        calls = create_calls(sb, hangup_times(args, scenario))
        sids = set(start_recordings(sb, calls, url))
        before = api_requests(sb.stats())
        started = time.monotonic()
        deadline = started + 600
        while time.monotonic() < deadline:
            stats = sb.stats()
            if stats["callbacks_sent"] + stats["callbacks_failed"] >= len(sids):
                break
            time.sleep(0.2)
        elapsed = time.monotonic() - started
        stats = sb.stats()
        return {
            "kind": "(c) status callbacks",
            "scenario": scenario,
            "finished": len(stored & sids),
            "requests": api_requests(stats) - before,
            "seconds": elapsed,
            "note": "" if public_key else "unsigned sandbox: callbacks refused (401)",
            "callbacks_refused": stats["callbacks_failed"],
        }
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        sb.stop()
        replays.engine.dispose()
        shutil.rmtree(state_dir, ignore_errors=True)


# (d) ----------------------------------------------------------------------------------------------------
def run_stuck_week(args: argparse.Namespace, max_pending_age: float | None) -> list[dict[str, Any]]:
    """Per simulated day, what the feed's listings and state cost with one recording stuck in progress."""
    import bisect
    from datetime import timedelta

    from telnyx_provider.recording_feed import RecordingFeed

    start = datetime(2026, 12, 1, tzinfo=timezone.utc)
    bound = {} if max_pending_age is None else {"max_pending_age": max_pending_age}
    if max_pending_age is None:  # no bound: what the trigger did before max_pending_age
        bound = {"max_pending_age": 10 * 365 * 86400.0}
    feed = RecordingFeed(account_sid="acc", overlap=120.0, lookback=4 * 3600.0, **bound)
    every = args.week_every * 60
    created = [index * every for index in range(int(7 * 86400 / every) + 1)]  # [0]: the stuck one
    shapes = [
        (
            {
                "sid": f"r{i}",
                "date_created": (start + timedelta(seconds=at)).isoformat(),
                "status": "in-progress",
            },
            {
                "sid": f"r{i}",
                "date_created": (start + timedelta(seconds=at)).isoformat(),
                "status": "completed",
                "duration": 5,
            },
        )
        for i, at in enumerate(created)
    ]
    days: list[dict[str, Any]] = []
    for minute in range(0, 7 * 24 * 60, int(args.week_poll)):
        now_s = minute * 60.0
        window = (feed.window_start(start + timedelta(seconds=now_s)) - start).total_seconds()
        listing = [
            shapes[i][1 if i and now_s - created[i] >= 300 else 0]
            for i in range(bisect.bisect_left(created, window), bisect.bisect_right(created, now_s))
        ]
        feed.observe(listing)
        day = minute // (24 * 60)
        if len(days) <= day:
            days.append({"day": day + 1, "listed": 0, "requests": 0, "state_bytes": 0, "stuck_pending": True})
        figures = days[day]
        figures["listed"] = max(figures["listed"], len(listing))
        figures["requests"] = max(figures["requests"], len(listing) // args.week_page_size + 1)
        figures["state_bytes"] = max(figures["state_bytes"], len(json.dumps(feed.to_json())))
        figures["stuck_pending"] = "r0" in feed.pending
    return days


def week_table(bounded: list[dict[str, Any]], unbounded: list[dict[str, Any]]) -> str:
    lines = [
        "| day | max_pending_age | largest listing (recordings) | requests per poll | saved state (bytes) "
        "| stuck one pending |",
        "|---:|---|---:|---:|---:|---|",
    ]
    for label, days in (("24 h (default)", bounded), ("none", unbounded)):
        for day in days:
            lines.append(
                f"| {day['day']} | {label} | {day['listed']:,} | {day['requests']} | {day['state_bytes']:,} "
                f"| {'yes' if day['stuck_pending'] else 'no'} |"
            )
    return "\n".join(lines)


def table(results: list[dict[str, Any]], recordings: int) -> str:
    header = "| waiting by | scenario | finished | API requests after the starts | per recording | target |"
    lines = [header, "|---|---|---:|---:|---:|---|"]
    for result in results:
        per = result["requests"] / recordings
        target = {"(b)": f"<= {TARGET_POLLING}", "(c)": "0"}.get(result["kind"][:3], "-")
        lines.append(
            f"| {result['kind']} | {result['scenario']} | {result['finished']}/{recordings} | "
            f"{result['requests']:,} | {per:.3f} | {target} |"
            + (f" {result['note']}" if result.get("note") else "")
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recordings", type=int, default=1000)
    parser.add_argument("--poll", type=float, default=10.0, help="poll interval, real-world seconds")
    parser.add_argument("--spread", type=float, default=150.0, help="real-world seconds the ends spread over")
    parser.add_argument("--scale", type=float, default=0.1, help="benchmark seconds per real-world second")
    parser.add_argument("--lead", type=float, default=8.0, help="benchmark seconds left for the starts")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--skip-sensors", action="store_true", help="skip (a), the slowest phase")
    parser.add_argument("--stuck-week-only", action="store_true", help="run (d) alone")
    parser.add_argument("--week-every", type=float, default=2.0, help="(d): minutes between two recordings")
    parser.add_argument("--week-poll", type=float, default=5.0, help="(d): minutes between two listings")
    parser.add_argument("--week-page-size", type=int, default=1000, help="(d): recordings per page")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "provider"))
    command = "python benchmarks/requests_per_recording.py " + shlex.join(
        argv if argv is not None else sys.argv[1:]
    )
    print(f"# {command.strip()}  ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC)", flush=True)
    results = []
    for scenario in ("spread", "burst") if not args.stuck_week_only else ():
        if not args.skip_sensors and scenario == "spread":
            results.append(run_sensors(args, scenario))
            print(results[-1], flush=True)
        results.append(run_polling(args, scenario))
        print(results[-1], flush=True)
        results.append(run_callbacks(args, scenario))
        print(results[-1], flush=True)
    if results:
        print()
        print(table(results, args.recordings))
    print()
    print(week_table(run_stuck_week(args, 24 * 3600.0), run_stuck_week(args, None)))


if __name__ == "__main__":
    main()
