"""Where the event lag of deferred waits goes: one run of ``waiting_at_scale.py``'s waits, traced.

Prints figures; it is not a test. Runs the waits as ``waiting_at_scale.run_waits`` does (the sandbox and the
trigger process each in their own process), with this file as the trigger process: it wraps, in that process
only, ``SharedPoll.add`` (a wait joins its poll), ``SharedPoll._round``, ``list_recordings_page`` and
``Waiter.deliver`` (a look's outcome handed to a wait) to note when each happened, and sends the notes back
with the result. Nothing is added to the package. Then it prints, in seconds after the triggers' start:
rebuilding the triggers, the waits joining, each round and its listing, the lag (completion to event), the
time from a wait's last hand-over to its event, and what a perfect poll (rounds exactly one interval apart,
listings taking no time) would give on the same completion times.

    python benchmarks/lag_trace.py                              # 10,000 waits, shared polls, 10 s interval
    python benchmarks/lag_trace.py --waits 1000 --interval 1 --length 4
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

#: Set in the environment of the trigger process this script starts (its own file, run as the runner).
RUNNER_MARK = "TELNYX_LAG_TRACE_RUNNER"
TRACE: dict[str, Any] = {"joins": {}, "delivers": {}, "rounds": [], "pages": []}


def _instrument() -> None:
    """In the trigger process: note when waits join, rounds run, pages arrive and outcomes are handed over."""
    import trigger_runner
    from telnyx_provider.hooks.recording_async import AsyncRecordingClient
    from telnyx_provider.triggers.poll_waiters import Waiter
    from telnyx_provider.triggers.shared_polls import SharedPoll

    add, round_, page, deliver = (
        SharedPoll.add,
        SharedPoll._round,
        AsyncRecordingClient.list_recordings_page,
        Waiter.deliver,
    )

    def traced_add(self: SharedPoll, waiter: Waiter) -> None:
        TRACE["joins"][waiter.sid] = time.time()
        add(self, waiter)

    async def traced_round(self: SharedPoll, started: float) -> float:
        began = time.time()
        try:
            return await round_(self, started)
        finally:
            TRACE["rounds"].append([began, time.time()])

    async def traced_page(self: AsyncRecordingClient, *args: Any, **kwargs: Any) -> Any:
        began = time.time()
        result = await page(self, *args, **kwargs)
        TRACE["pages"].append([began, time.time(), kwargs.get("page"), len(result[0])])
        return result

    def traced_deliver(self: Waiter, outcome: Any) -> None:
        TRACE["delivers"].setdefault(self.sid, []).append(time.time())
        deliver(self, outcome)

    SharedPoll.add, SharedPoll._round = traced_add, traced_round  # type: ignore[method-assign]
    AsyncRecordingClient.list_recordings_page = traced_page  # type: ignore[method-assign]
    Waiter.deliver = traced_deliver  # type: ignore[method-assign]
    emit = trigger_runner._emit

    def emit_with_trace(payload: dict[str, Any]) -> None:
        if "events" in payload:
            payload = {**payload, "trace": TRACE}
        emit(payload)

    trigger_runner._emit = emit_with_trace
    trigger_runner.main()


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else math.nan


def report(sids: list[str], interval: float, result: dict[str, Any], completed_at: dict[str, float]) -> None:
    trace, t_go = result["trace"], result["t_go"]
    joins = sorted(trace["joins"].values())
    print(
        f"waits joined their poll    {joins[0] - t_go:.3f} to {joins[-1] - t_go:.3f} s"
        if joins
        else "no joins"
    )
    for began, ended in trace["rounds"]:
        pages = [p for p in trace["pages"] if began <= p[0] <= ended]
        if pages:
            print(f"round at {began - t_go:7.3f} s: {ended - began:.3f} s, {len(pages)} list page(s)")
    events = {index: at for index, _, at in result["events"] if index >= 0}
    lags, handed = [], []
    for index, at in events.items():
        sid = sids[index]
        if sid in completed_at:
            lags.append(at - max(completed_at[sid], t_go))
        if trace["delivers"].get(sid):
            handed.append(at - trace["delivers"][sid][-1])
    print(
        f"lag completion → event     p50 {quantile(lags, 0.5):.2f} s, p95 {quantile(lags, 0.95):.2f} s, "
        f"max {max(lags):.2f} s"
    )
    if handed:
        print(
            f"last hand-over → event     p50 {1000 * quantile(handed, 0.5):.1f} ms, "
            f"max {1000 * max(handed):.1f} ms"
        )
    for label, start in (("the triggers' start", t_go), ("the first join", joins[0] if joins else t_go)):
        perfect = []
        for sid in sids:
            done = completed_at.get(sid, t_go)
            rounds = max(1, math.ceil((done - start) / interval))
            perfect.append(start + rounds * interval - max(done, t_go))
        print(
            f"a perfect poll from {label}: p50 {quantile(perfect, 0.5):.2f} s, "
            f"p95 {quantile(perfect, 0.95):.2f} s, max {max(perfect):.2f} s"
        )
    print(
        f"final before the triggers started: {sum(1 for sid in sids if completed_at.get(sid, t_go) < t_go)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--waits", type=int, default=10_000)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--length", type=float, default=15.0)
    parser.add_argument("--kind", choices=["telnyx", "telnyx-own"], default="telnyx")
    args = parser.parse_args()
    import waiting_at_scale as bench

    bench.RUNNER = Path(__file__).resolve()
    captured: dict[str, Any] = {}
    summarize = bench.summarize

    def keep(
        kind: str, sids: list[str], interval: float, result: dict[str, Any], *rest: Any
    ) -> dict[str, Any]:
        captured.update(sids=sids, result=result, completed_at=rest[1]["completed_at"])
        return summarize(kind, sids, interval, result, *rest)

    bench.summarize = keep
    workdir = Path(tempfile.mkdtemp(prefix="telnyx-lag-"))
    os.environ.update({k: v for k, v in bench.airflow_env(workdir).items() if k.startswith("AIRFLOW")})
    os.environ[RUNNER_MARK] = "1"  # the trigger process inherits it (airflow_env copies the environment)
    load = os.getloadavg()[0]
    bench.run_waits(args.kind, args.waits, args.interval, args.length, workdir)
    print(
        f"{args.waits} waits ({args.kind}), interval {args.interval:g} s, recordings of {args.length:g} s; "
        f"load average {load:.2f} at the start, {os.getloadavg()[0]:.2f} at the end"
    )
    report(captured["sids"], args.interval, captured["result"], captured["completed_at"])


if __name__ == "__main__":
    if os.environ.get(RUNNER_MARK):  # started by run_waits as the trigger process: trigger_runner.py, traced
        _instrument()
    else:
        main()
