"""The trigger process of the benchmark: rebuild triggers from ``serialize()`` output, run them in one loop.

Started by ``waiting_at_scale.py`` with the Airflow environment already set (temporary ``AIRFLOW_HOME``,
unit-test mode, the connections as ``AIRFLOW_CONN_*``). Protocol on stdin/stdout, one JSON object a line:

1. it imports what a triggerer running these triggers has loaded, measures its baseline RSS and CPU time,
   and prints ``{"ready": ...}``;
2. it reads ``{"count": N, "timeout": seconds}``, then N lines, each the JSON of one trigger's
   ``serialize()`` (``[classpath, kwargs]``), rebuilds each trigger as its line arrives, and runs them all,
   gathered, in one asyncio event loop as the triggerer does (``async for event in trigger.run()``);
3. it prints the result: when each event arrived (``time.time()``), CPU seconds, RSS baseline/peak/after,
   and the HTTP requests the client library sent (counted where each kind sends: ``aiohttp.ClientSession``
   for the shipped client and for ``HttpSensorTrigger``, ``httpx.AsyncHTTPTransport`` for the httpx variant).

Kinds: ``telnyx`` (the shipped client, aiohttp), ``telnyx-httpx`` (the same client over the benchmark-only
httpx transport of ``httpx_transport.py``), ``http`` (Airflow's ``HttpSensorTrigger``).

``--kind pool`` instead fires one GET per recording at once through the client, over the shipped transport
(aiohttp behind a FIFO semaphore), over aiohttp with no semaphore (the connector's limit alone queues the
burst) and over the httpx variant, and prints when the replies arrived.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib
import json
import os
import ssl
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import psutil

PROCESS = psutil.Process()
RSS_SAMPLE_SECONDS = 0.05
MB = 1024 * 1024
TRACE_DEPTH = 30  # frames kept per allocation with tracemalloc
TRACE_SHOWN = 14  # frames printed per traceback
# The protocol keeps the real stdout; anything else printed there (Airflow logs to stdout) goes to stderr.
_PROTOCOL = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)


def _emit(payload: dict[str, Any]) -> None:
    _PROTOCOL.write(json.dumps(payload) + "\n")
    _PROTOCOL.flush()


def _cpu_seconds() -> float:
    times = PROCESS.cpu_times()
    return float(times.user + times.system)


def _system_seconds() -> float:
    return float(PROCESS.cpu_times().system)


def _load(classpath: str) -> Any:
    module, _, name = classpath.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _count_calls(owner: type, name: str) -> list[int]:
    """Count the calls of the coroutine method ``owner.name`` (one per HTTP request it sends)."""
    counter = [0]
    original = getattr(owner, name)

    async def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        counter[0] += 1
        return await original(self, *args, **kwargs)

    setattr(owner, name, counting)
    return counter


def _prepare(kind: str) -> list[int]:
    """Import what the triggerer has loaded once it runs triggers of this kind; count the requests sent.

    The sandbox counts only its ``/v2`` routes (not ``HttpSensorTrigger``'s media URL), and the count on
    the client side also shows each kind sends through the library it is said to.
    """
    importlib.import_module("airflow.sdk")
    if kind == "http":
        importlib.import_module("airflow.providers.http.triggers.http")
    else:
        importlib.import_module("telnyx_provider.hooks.recording_async")
        importlib.import_module("telnyx_provider.triggers.recording")
        importlib.import_module("telnyx_provider.triggers.shared_polls")
        from airflow.sdk import BaseHook

        # A triggerer has looked a connection up long before: the first lookup loads the secrets backends
        # (~0.1 s, and seconds under tracemalloc, blocking the loop), a one-time cost kept out of the figures.
        asyncio.run(BaseHook.aget_connection("telnyx_default"))
    if kind == "telnyx-httpx":
        import httpx

        import httpx_transport

        httpx_transport.install()
        return _count_calls(httpx.AsyncHTTPTransport, "handle_async_request")
    import aiohttp  # the shipped client's and HttpSensorTrigger's transport

    return _count_calls(aiohttp.ClientSession, "_request")


async def _sample_rss(peak: list[int], stop: asyncio.Event) -> None:
    began, timeline = time.monotonic(), os.environ.get("TRIGGER_RUNNER_RSS_TIMELINE")  # for digging
    while not stop.is_set():
        rss = PROCESS.memory_info().rss
        if timeline and rss > peak[0]:
            print(f"rss {time.monotonic() - began:7.3f} s {rss / MB:8.2f} MB", file=sys.stderr)
        peak[0] = max(peak[0], rss)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), RSS_SAMPLE_SECONDS)


async def _run_triggers(
    triggers: list[Any],
    timeout: float,
    peak: list[int],
    snapshot_after: float | None = None,
    snapshots: list[Any] | None = None,
) -> list[list[Any]]:
    events: list[list[Any]] = []

    async def one(index: int, trigger: Any) -> None:
        async for event in trigger.run():
            payload = event.payload
            status = payload.get("status") if isinstance(payload, dict) else str(payload)
            events.append([index, status, time.time()])

    stop = asyncio.Event()
    sampler = asyncio.create_task(_sample_rss(peak, stop))
    tasks = [asyncio.create_task(one(index, trigger)) for index, trigger in enumerate(triggers)]
    if snapshot_after is not None:  # tracemalloc: the heap while every trigger is waiting
        await asyncio.sleep(snapshot_after)
        snapshots.append(tracemalloc.take_snapshot())
    done, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for task in done:
        if task.exception() is not None:
            events.append([-1, f"crashed: {task.exception()!r}", time.time()])
    stop.set()
    await sampler
    return events


def run_waits(kind: str) -> None:
    counter = _prepare(kind)
    gc.collect()
    rss_base = PROCESS.memory_info().rss
    _emit({"ready": True, "rss_base": rss_base})
    header = json.loads(sys.stdin.readline())
    peak = [rss_base]
    cpu_0, system_0 = _cpu_seconds(), _system_seconds()
    trace = header.get("tracemalloc")  # {"after": s, "path": file}: where the memory of the waits goes
    snapshots: list[Any] = []
    if trace:
        tracemalloc.start(TRACE_DEPTH)
        snapshots.append(tracemalloc.take_snapshot())
    t_go = time.time()
    triggers = []
    for _ in range(header["count"]):  # one serialized trigger a line, rebuilt as it is read
        classpath, kwargs = json.loads(sys.stdin.readline())
        triggers.append(_load(classpath)(**kwargs))
    requests_before = counter[0]
    profile_path = os.environ.get("TRIGGER_RUNNER_PROFILE")  # a cProfile dump of the run, for digging
    if profile_path:
        import cProfile

        with cProfile.Profile() as profiler:
            events = asyncio.run(_run_triggers(triggers, header["timeout"], peak))
        profiler.dump_stats(profile_path)
    else:
        after = trace["after"] if trace else None
        events = asyncio.run(_run_triggers(triggers, header["timeout"], peak, after, snapshots))
    if trace:
        peak_traced = tracemalloc.get_traced_memory()[1]
        snapshots.append(tracemalloc.take_snapshot())  # every trigger has fired: what is still held
        tracemalloc.stop()
        _write_trace(snapshots, trace["path"], len(triggers), peak_traced)
    t_end = time.time()
    cpu_s, system_s = _cpu_seconds() - cpu_0, _system_seconds() - system_0
    rss_end = PROCESS.memory_info().rss
    peak[0] = max(peak[0], rss_end)
    del triggers
    gc.collect()
    _emit(
        {
            "t_go": t_go,
            "t_end": t_end,
            "cpu_s": cpu_s,
            "system_s": system_s,
            "rss_base": rss_base,
            "rss_peak": peak[0],
            "rss_end": rss_end,
            "rss_after_gc": PROCESS.memory_info().rss,
            "events": events,
            "client_requests": counter[0] - requests_before,
        }
    )


def _write_trace(snapshots: list[Any], path: str, waits: int, peak: int) -> None:
    """Where the memory of the waits goes: snapshots while they wait and after they fired, each compared
    with the one taken before they were built, by file and by traceback."""
    ignored = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen *>")]
    base, *later = (snapshot.filter_traces(ignored) for snapshot in snapshots)
    labels = ["while the triggers wait", "after every trigger fired"][-len(later) :]
    lines = [f"tracemalloc, {waits} waits: peak traced {peak / MB:.2f} MB", ""]
    for label, snapshot in zip(labels, later, strict=True):
        by_file = snapshot.compare_to(base, "filename")
        total = sum(stat.size_diff for stat in by_file)
        lines.append(f"== {label}: {total / MB:+.2f} MB traced ({total / waits:.0f} B per wait)")
        lines.append("By file (top 12):")
        lines += [
            f"  {stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d} blocks  {stat.traceback[0].filename}"
            for stat in by_file[:12]
        ]
        lines.append("By line (top 15):")
        lines += [
            f"  {stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d} blocks  {stat.traceback[0]}"
            for stat in snapshot.compare_to(base, "lineno")[:15]
        ]
        lines.append("By traceback (top 8, innermost frame last):")
        for stat in snapshot.compare_to(base, "traceback")[:8]:
            lines.append(f"  {stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d} blocks")
            lines += [f"      {frame.filename}:{frame.lineno}" for frame in stat.traceback[-TRACE_SHOWN:]]
        lines.append("")
    Path(path).write_text("\n".join(lines))


BURST_VARIANTS = {
    "slots": "shipped: aiohttp, FIFO semaphore of pool size",
    "aiohttp-unbounded": "no bound: aiohttp's connector queues it",
    "httpx-slots": "httpx: FIFO semaphore + a connection per slot",
}


def _transport(variant: str, config: Any) -> Any:
    """The client's transport for a burst variant other than the shipped one."""
    if variant == "httpx-slots":
        import httpx_transport

        return httpx_transport.HttpxSlots(config)
    from telnyx_provider.hooks.recording_async import ConnectionSlots

    slots = ConnectionSlots(
        config.pool_size,
        connect_timeout=config.connect_timeout,
        read_timeout=config.read_timeout,
        ssl_context=ssl.create_default_context(cafile=config.ca_bundle),
    )
    # The same session and connector (limit = pool size), without the semaphore in front: every request is
    # built and handed to aiohttp at once, and the connector's waiters queue for the connections.
    assert isinstance(slots._free, asyncio.Semaphore), "ConnectionSlots changed: update this variant"
    slots._free = asyncio.Semaphore(1_000_000)
    return slots


async def _burst(recording_sids: list[str], variant: str) -> dict[str, Any]:
    """Fire one GET per recording at once through the client; note when each reply arrives."""
    from telnyx_provider.hooks.recording_async import shared_client

    async with shared_client("telnyx_default") as client:
        shipped = client._client
        if variant != "slots":  # the same client over another transport
            client._client = _transport(variant, client.config)
        try:
            await client.get_recording(recording_sids[0])  # one connection open before timing
            replies: list[float] = []

            async def one(sid: str) -> None:
                await client.get_recording(sid)
                replies.append(time.perf_counter())

            cpu_0 = _cpu_seconds()
            start = time.perf_counter()
            await asyncio.gather(*(one(sid) for sid in recording_sids))
            cpu_s = _cpu_seconds() - cpu_0
        finally:
            if client._client is not shipped:
                await client._client.aclose()
                client._client = shipped
    latencies = sorted(t - start for t in replies)
    return {
        "variant": variant,
        "label": BURST_VARIANTS[variant],
        "requests": len(latencies),
        "first_s": latencies[0],
        "p50_s": latencies[len(latencies) // 2],
        "last_s": latencies[-1],
        "cpu_s": cpu_s,
    }


def run_pool() -> None:
    _prepare("telnyx")
    _emit({"ready": True})
    spec = json.loads(sys.stdin.readline())
    rounds = [variant for _ in range(2) for variant in BURST_VARIANTS]  # twice each, interleaved
    _emit({"bursts": [asyncio.run(_burst(spec["recording_sids"], variant)) for variant in rounds]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--kind", choices=["telnyx", "telnyx-own", "telnyx-httpx", "http", "pool"], required=True
    )
    args = parser.parse_args()
    if args.kind == "pool":
        run_pool()
    else:
        run_waits(args.kind)


if __name__ == "__main__":
    main()
