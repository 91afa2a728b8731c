"""Benchmark: a thousand (and ten thousand) recordings waited for by deferrable triggers in one event loop.

Prints figures; it is not a test. Every server listens on 127.0.0.1 and every phase is bounded in time.

Each run starts the TeXML sandbox in its own process (``python -m telnyx_provider.sandbox``) with N live
calls and recordings that end by themselves after ``--length`` seconds, starts N recordings through
``RecordingHook.start_call_recording``, and hands the JSON of N ``RecordingCompletedTrigger.serialize()``
to a separate trigger process (``trigger_runner.py``), which rebuilds the triggers and runs them gathered in
one asyncio event loop, as the triggerer does. Reported: wall time until all fired, RSS growth of the trigger
process, GETs per recording against the minimum, TCP connections the sandbox accepted, CPU per GET, and the
lag from a recording completing (sandbox clock) to its event arriving. Then: a burst of queued GETs on the
pool, the same waits over the benchmark-only httpx transport (``httpx_transport.py``; the shipped client
uses aiohttp, chosen on these figures) and with Airflow's ``HttpSensorTrigger``, the big run, and the import
cost at DAG-parse time.

    python benchmarks/waiting_at_scale.py                                  # everything, a few minutes
    python benchmarks/waiting_at_scale.py --skip-10k --skip-http --waits 200  # a quick look

``make benchmark`` installs the ``benchmark`` extra (apache-airflow-providers-http, psutil) and runs it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sandbox_process import SandboxProcess  # benchmarks/ is on sys.path when a script runs

HERE = Path(__file__).resolve().parent
RUNNER = HERE / "trigger_runner.py"
GET_ROUTE = "GET /Recordings/{sid}"
PROCESSING_DELAY = 0.2
START_THREADS = 8
MB = 1024 * 1024

# The targets of issue 4.
TARGET_RSS_MB_PER_1000 = 10.0
TARGET_RSS_MB_BIG = 80.0
TARGET_CONNECTIONS = 10
TARGET_CPU_MS_PER_GET = 0.5
TARGET_SHARED_PER_LOOK = 0.2  # issue 17: requests per wait per interval with shared polls
TARGET_IMPORT_RATIO = 1.02
LAG_SLACK_S = 1.0

# Where the trigger process counts the requests each kind sends (see trigger_runner.py).
LIBRARY = {"telnyx": "aiohttp", "telnyx-own": "aiohttp", "telnyx-httpx": "httpx", "http": "aiohttp"}
# Hand-written notes below this line in the Markdown file survive a rerun of the script.
NOTES_MARKER = "<!-- Hand-written notes below: waiting_at_scale.py --markdown keeps them as they are. -->"


def airflow_env(home: Path, connections: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of every Airflow process here: a temporary home, unit-test mode, connections."""
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
    }
    for conn_id, value in (connections or {}).items():
        env[f"AIRFLOW_CONN_{conn_id.upper()}"] = value
    return env


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


# -- processes ----------------------------------------------------------------------------------------


class RunnerProcess:
    """``trigger_runner.py --kind KIND``, spoken to one JSON line at a time; its log goes to a file."""

    def __init__(self, kind: str, env: dict[str, str], log_path: Path) -> None:
        self.log = open(log_path, "w")  # noqa: SIM115 - closed in finish()
        self.process = subprocess.Popen(
            [sys.executable, str(RUNNER), "--kind", kind],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env=env,
        )
        self.ready = self.read(120)

    def read(self, timeout: float) -> dict[str, Any]:
        watchdog = threading.Timer(timeout, self.process.kill)
        watchdog.start()
        try:
            assert self.process.stdout is not None
            line = self.process.stdout.readline()
        finally:
            watchdog.cancel()
        if not line:
            self.process.wait(10)
            raise RuntimeError(f"the trigger process failed or timed out; see {self.log.name}")
        result: dict[str, Any] = json.loads(line)
        return result

    def send(self, *lines: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("".join(line + "\n" for line in lines))
        self.process.stdin.flush()

    def finish(self, timeout: float) -> dict[str, Any]:
        try:
            return self.read(timeout)
        finally:
            self.close()

    def close(self) -> None:
        """Wait a little for the process to end, then kill it (safe to call twice)."""
        if self.process.poll() is None:
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.log.close()


# -- the waits ----------------------------------------------------------------------------------------


def sandbox_options(length: float) -> list[str]:
    """CLI flags for recordings of ``length`` seconds."""
    return ["--recording-seconds", str(length), "--processing-delay", str(PROCESSING_DELAY)]


def start_recordings(sandbox: SandboxProcess, call_sids: list[str]) -> list[str]:
    """Start one recording per call through the real hook (a few threads, one hook each)."""
    from telnyx_provider.hooks.recording import RecordingHook

    local = threading.local()

    def start(call_sid: str) -> str:
        if not hasattr(local, "hook"):
            local.hook = RecordingHook()
        recording = local.hook.start_call_recording(call_sid, play_beep=False, recording_channels="single")
        return str(recording["sid"])

    os.environ["AIRFLOW_CONN_TELNYX_DEFAULT"] = sandbox.conn_json()
    with ThreadPoolExecutor(START_THREADS) as pool:
        return list(pool.map(start, call_sids))


def serialized(kind: str, sid: str, interval: float) -> tuple[str, dict[str, Any]]:
    """What the deferring task hands the triggerer: the trigger's ``serialize()``."""
    if kind == "http":
        from airflow.providers.http.triggers.http import HttpSensorTrigger

        # The media URL answers 404 until the recording is completed, then 200: HttpSensorTrigger's "fire
        # on anything but 404" then means what our trigger's "completed with a duration" means.
        endpoint = f"media/{sid}.wav"
        return HttpSensorTrigger(
            endpoint=endpoint, http_conn_id="http_sandbox", poke_interval=interval
        ).serialize()
    from telnyx_provider.triggers.recording import RecordingCompletedTrigger

    return RecordingCompletedTrigger(sid, poll_interval=interval).serialize()


def run_waits(
    kind: str, waits: int, interval: float, length: float, workdir: Path, trace: Path | None = None
) -> dict[str, Any]:
    """Start ``waits`` recordings and wait for all of them with triggers of ``kind`` in one process."""
    home = workdir / f"home-{kind}-{waits}"
    home.mkdir()
    sandbox = SandboxProcess(waits, sandbox_options(length), airflow_env(home))
    runner = None
    try:
        extra = {"shared_polls": False} if kind in ("telnyx-own", "telnyx-httpx") else None
        connections = {"telnyx_default": sandbox.conn_json(extra), "http_sandbox": sandbox.http_conn_json()}
        runner = RunnerProcess(kind, airflow_env(home, connections), workdir / f"runner-{kind}-{waits}.log")
        started = time.monotonic()
        sids = start_recordings(sandbox, sandbox.call_sids)
        start_seconds = time.monotonic() - started
        # One JSON line per trigger: what the triggerer stores, and rebuilds the trigger from.
        lines = [json.dumps(serialized(kind, sid, interval)) for sid in sids]
        before = sandbox.stats()
        sandbox_cpu = sandbox.cpu_seconds()
        timeout = length + PROCESSING_DELAY + 10 * interval + 60 + waits / 200
        header: dict[str, Any] = {"count": len(lines), "timeout": timeout}
        if trace is not None:  # the heap while every trigger waits (between its first looks), by traceback
            header["tracemalloc"] = {"after": min(length, 1.5 * interval), "path": str(trace)}
        runner.send(json.dumps(header), *lines)
        result = runner.finish(timeout + 60)
        sandbox_cpu = sandbox.cpu_seconds() - sandbox_cpu
        after = sandbox.stats()
    finally:
        if runner is not None and runner.process.poll() is None:
            runner.process.kill()
            runner.close()
        sandbox.stop()
    figures = summarize(kind, sids, interval, result, before, after)
    figures.update(waits=waits, interval=interval, length=length, start_seconds=start_seconds)
    figures.update(
        sandbox_cpu_s=sandbox_cpu, sandbox_cpu_ms_per_request=1000 * sandbox_cpu / max(1, figures["gets"])
    )
    return figures


def summarize(
    kind: str,
    sids: list[str],
    interval: float,
    result: dict[str, Any],
    before: dict[str, Any],
    after: dict[str, Any],
) -> dict[str, Any]:
    """Turn the trigger process's report and the sandbox's stats into the figures."""
    t_go = result["t_go"]
    events = {index: (status, at) for index, status, at in result["events"] if index >= 0}
    statuses: dict[str, int] = {}
    for status, _ in events.values():
        statuses[status] = statuses.get(status, 0) + 1
    completed_at = after["completed_at"]
    # Lag from the recording's completion (sandbox clock, same machine), or from the triggers' start for a
    # recording already final before any trigger could look at it.
    lags = [at - max(completed_at[sids[i]], t_go) for i, (_, at) in events.items() if sids[i] in completed_at]
    if kind == "http":  # the media URL is no /v2 route: the trigger process counted its requests
        gets, per_recording = int(result["client_requests"]), []
    else:
        # Every API request after the starts: GETs of one recording and, with shared polls, list pages.
        routes = after["requests_by_route"]
        gets = sum(n - before["requests_by_route"].get(route, 0) for route, n in routes.items())
        per_recording = [
            after["gets_per_recording"].get(sid, 0) - before["gets_per_recording"].get(sid, 0) for sid in sids
        ]
    # The fewest GETs that see a recording final: the first look one interval after the triggers start, then
    # one per interval up to its completion (= ceil(length / interval) for a recording started as the triggers
    # start). Also the looks a wait takes: what one GET per wait per interval costs.
    least = [
        max(1, math.ceil(max(0.0, completed_at.get(sid, t_go) - t_go) / interval - 1e-9)) for sid in sids
    ]
    excess = [got - fewest for got, fewest in zip(per_recording, least, strict=False)]
    return {
        "kind": kind,
        "fired": len(events),
        "statuses": statuses,
        "crashed": [status for index, status, _ in result["events"] if index < 0],
        "wall_s": max((at for _, at in events.values()), default=float("nan")) - t_go,
        "rss_base_mb": result["rss_base"] / MB,
        "rss_peak_growth_mb": (result["rss_peak"] - result["rss_base"]) / MB,
        "rss_end_growth_mb": (result["rss_end"] - result["rss_base"]) / MB,
        "rss_after_gc_growth_mb": (result["rss_after_gc"] - result["rss_base"]) / MB,
        "gets": gets,
        "client_requests": result["client_requests"],
        "gets_per_recording_mean": gets / len(sids),
        "gets_per_recording_max": max(per_recording, default=None),
        "least_mean": statistics.fmean(least),
        "excess_range": [min(excess), max(excess)] if excess else None,
        "off_by_more_than_one": sum(1 for e in excess if abs(e) > 1),
        "connections": after["connections_accepted"] - before["connections_accepted"] - 1,
        "cpu_s": result["cpu_s"],
        "system_s": result["system_s"],
        "cpu_ms_per_get": 1000 * result["cpu_s"] / max(1, gets),
        "looks": sum(least),
        "requests_per_look": gets / max(1, sum(least)),
        "cpu_ms_per_look": 1000 * result["cpu_s"] / max(1, sum(least)),
        "lag_p50_s": quantile(lags, 0.5),
        "lag_p99_s": quantile(lags, 0.99),
        "lag_max_s": max(lags, default=float("nan")),
        "final_before_start": sum(1 for sid in sids if completed_at.get(sid, t_go) < t_go),
    }


def run_pool_burst(burst: int, workdir: Path) -> dict[str, Any]:
    """One GET per recording at once, through the shipped client, aiohttp without its bound, and httpx."""
    home = workdir / "home-pool"
    home.mkdir()
    sandbox = SandboxProcess(burst, sandbox_options(3600.0), airflow_env(home))
    runner = None
    try:
        env = airflow_env(home, {"telnyx_default": sandbox.conn_json()})
        runner = RunnerProcess("pool", env, workdir / "runner-pool.log")
        sids = start_recordings(sandbox, sandbox.call_sids)
        before = sandbox.stats()
        runner.send(json.dumps({"recording_sids": sids}))
        result = runner.finish(300)
        after = sandbox.stats()
    finally:
        if runner is not None and runner.process.poll() is None:
            runner.process.kill()
            runner.close()
        sandbox.stop()
    result["connections"] = after["connections_accepted"] - before["connections_accepted"] - 1
    return result


# -- import cost --------------------------------------------------------------------------------------

IMPORT_PROBE = textwrap.dedent(
    """
    import json, sys, time
    t0 = time.perf_counter()
    import airflow.sdk
    t1 = time.perf_counter()
    loaded = set(sys.modules)
    import telnyx_provider.operators.recording, telnyx_provider.sensors.recording
    t2 = time.perf_counter()
    print(json.dumps({"sdk": t1 - t0, "ours": t2 - t1, "new": sorted(set(sys.modules) - loaded),
                      "httpx_by_sdk": "httpx" in loaded, "aiohttp_by_sdk": "aiohttp" in loaded}))
    """
)
# aiohttp (with yarl and multidict) is the triggers' transport: the triggerer alone may import it.
HEAVY_AT_PARSE_TIME = (
    "aiohttp",
    "yarl",
    "multidict",
    "httpx",
    "requests",
    "tenacity",
    "telnyx_provider.sandbox",
    "telnyx_provider.hooks",
    "telnyx_provider.triggers",
)


def measure_imports(repetitions: int, workdir: Path) -> dict[str, Any]:
    """Time ``import airflow.sdk``, then the operator and sensor modules on top, in fresh interpreters."""
    home = workdir / "home-imports"
    home.mkdir()
    runs = []
    for _ in range(repetitions):
        out = subprocess.run(
            [sys.executable, "-c", IMPORT_PROBE],
            env=airflow_env(home),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if out.returncode != 0:
            raise RuntimeError(out.stderr)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    new = runs[0]["new"]
    heavy = [name for name in new if any(name == h or name.startswith(h + ".") for h in HEAVY_AT_PARSE_TIME)]
    return {
        "repetitions": repetitions,
        "sdk_s": statistics.median(run["sdk"] for run in runs),
        "ours_s": statistics.median(run["ours"] for run in runs),
        "ratio": statistics.median((run["sdk"] + run["ours"]) / run["sdk"] for run in runs),
        "new_modules": new,
        "heavy": heavy,
        "httpx_by_sdk": runs[0]["httpx_by_sdk"],
        "aiohttp_by_sdk": runs[0]["aiohttp_by_sdk"],
    }


# -- report -------------------------------------------------------------------------------------------


def row(label: str, text: str) -> str:
    return f"  {label:<24}{text}"


def describe_waits(r: dict[str, Any], title: str) -> list[str]:
    lag_limit = r["interval"] + LAG_SLACK_S
    statuses = ", ".join(f"{count} {status}" for status, count in r["statuses"].items())
    lines = [
        f"{title}: {r['waits']} waits, poll interval {r['interval']:g} s, recordings of {r['length']:g} s "
        f"(+{PROCESSING_DELAY:g} s processing)",
        row("events", f"{r['fired']} of {r['waits']} fired ({statuses})")
        + (f"; CRASHED: {r['crashed']}" if r["crashed"] else ""),
        row("wall time until all", f"{r['wall_s']:.2f} s from the triggers' start")
        + f" (starting the recordings before took {r['start_seconds']:.1f} s)",
        row(
            "RSS growth",
            f"peak {r['rss_peak_growth_mb']:+.1f} MB, at the end {r['rss_end_growth_mb']:+.1f} MB, ",
        )
        + f"after gc {r['rss_after_gc_growth_mb']:+.1f} MB (after imports: {r['rss_base_mb']:.0f} MB)",
    ]
    cpu = f"{r['cpu_s']:.2f} s ({r['system_s']:.2f} s of it in the kernel)"
    lag = f"p50 {r['lag_p50_s']:.2f} s, p99 {r['lag_p99_s']:.2f} s, max {r['lag_max_s']:.2f} s"
    if r["kind"] == "http":
        return [
            *lines,
            row("requests", f"{r['gets']} ({r['gets_per_recording_mean']:.2f} per recording, counted in the ")
            + "trigger process)",
            row("TCP connections", str(r["connections"])),
            row("CPU", f"{cpu} = {r['cpu_ms_per_get']:.3f} ms per request"),
            row("lag completion → event", lag),
            row("sandbox CPU", f"{r['sandbox_cpu_ms_per_request']:.3f} ms per request (a new connection and ")
            + "server thread each)",
        ]
    rss_limit = TARGET_RSS_MB_PER_1000 * r["waits"] / 1000 if r["waits"] <= 1000 else TARGET_RSS_MB_BIG
    lag_ok = r["lag_max_s"] <= lag_limit and r["fired"] == r["waits"]
    if r["kind"] == "telnyx":  # shared polls: listings, and GETs where they are cheaper
        return [
            *lines,
            row("RSS target", f"≤ {rss_limit:g} MB [{verdict(r['rss_peak_growth_mb'] <= rss_limit)}]"),
            row("requests", f"{r['gets']} (list pages and GETs) for {r['looks']} looks (one per wait per ")
            + f"interval) = {r['requests_per_look']:.4f} per look "
            + f"(target ≤ {TARGET_SHARED_PER_LOOK}) "
            + f"[{verdict(r['requests_per_look'] <= TARGET_SHARED_PER_LOOK)}]",
            row("TCP connections", f"{r['connections']} (target ≤ {TARGET_CONNECTIONS}) ")
            + f"[{verdict(r['connections'] <= TARGET_CONNECTIONS)}]",
            row("CPU", f"{cpu} = {r['cpu_ms_per_look']:.3f} ms per look ")
            + f"(target ≤ {TARGET_CPU_MS_PER_GET}) "
            + f"[{verdict(r['cpu_ms_per_look'] <= TARGET_CPU_MS_PER_GET)}]; "
            + f"{r['cpu_ms_per_get']:.1f} ms per request (one request answers many looks)",
            row("lag completion → event", f"{lag} (target ≤ interval + {LAG_SLACK_S:g} s = {lag_limit:g} s) ")
            + f"[{verdict(lag_ok)}]",
            row("sandbox CPU", f"{r['sandbox_cpu_ms_per_request']:.3f} ms per request (its own process)"),
        ]
    low, high = r["excess_range"]
    nominal = math.ceil(r["length"] / r["interval"])
    return [
        *lines,
        row("RSS target", f"≤ {rss_limit:g} MB [{verdict(r['rss_peak_growth_mb'] <= rss_limit)}]"),
        row(
            "GETs per recording",
            f"mean {r['gets_per_recording_mean']:.2f}, max {r['gets_per_recording_max']} ",
        )
        + f"({r['gets']} in all; "
        + f"{r['client_requests']} requests sent through {LIBRARY[r['kind']]})",
        row("minimum", f"⌈{r['length']:g}/{r['interval']:g}⌉ = {nominal} for a recording started as the ")
        + "triggers start;",
        row("", f"counted from each recording's own completion time: {r['least_mean']:.2f} on average"),
        row(
            "GETs minus minimum", f"{low:+d} to {high:+d}; off by more than one: {r['off_by_more_than_one']} "
        )
        + f"[{verdict(r['off_by_more_than_one'] == 0)}]",
        row("TCP connections", f"{r['connections']} (target ≤ {TARGET_CONNECTIONS}) ")
        + f"[{verdict(r['connections'] <= TARGET_CONNECTIONS)}]",
        row("CPU", f"{cpu} for {r['gets']} GETs = {r['cpu_ms_per_get']:.3f} ms per GET ")
        + f"(target ≤ {TARGET_CPU_MS_PER_GET}) [{verdict(r['cpu_ms_per_get'] <= TARGET_CPU_MS_PER_GET)}]",
        row("lag completion → event", f"{lag} (target ≤ interval + {LAG_SLACK_S:g} s = {lag_limit:g} s) ")
        + f"[{verdict(lag_ok)}]"
        + (
            f"; {r['final_before_start']} were final before the triggers started"
            if r["final_before_start"]
            else ""
        ),
        row("sandbox CPU", f"{r['sandbox_cpu_ms_per_request']:.3f} ms per request (its own process)"),
    ]


def describe_comparison(ours: dict[str, Any], http: dict[str, Any]) -> list[str]:
    def compare(key: str, unit: str, fmt: str = ".3f") -> str:
        a, b = ours[key], http[key]
        return f"{a:{fmt}} / {b:{fmt}} {unit} = {a / b:.2g}" if b else f"{a:{fmt}} / {b:{fmt}} {unit}"

    fewer = http["gets"] < 0.9 * ours["gets"]
    return [
        f"RecordingCompletedTrigger / HttpSensorTrigger on the same {ours['waits']:,} waits "
        "(below 1: ours is cheaper)",
        "  (HttpSensorTrigger GETs each recording's media URL, which answers 404 until the recording is",
        "  completed and 200 after, so both wait for the same thing and fire on completion. It opens an",
        "  aiohttp session, so a TCP connection, per poll, and logs a warning on each 404.)",
        row("CPU per GET", compare("cpu_ms_per_get", "ms")),
        row("RSS growth (peak)", compare("rss_peak_growth_mb", "MB", "+.1f")),
        row("TCP connections", compare("connections", "", "d")),
        row("lag max", compare("lag_max_s", "s", ".2f")),
        row(
            "GETs, total CPU",
            f"{ours['gets']} / {http['gets']} GETs; {ours['cpu_s']:.2f} / {http['cpu_s']:.2f} s",
        )
        + (" (it polls less often: each poll waits for a new connection)" if fewer else ""),
    ]


def describe_transports(aiohttp_run: dict[str, Any], httpx_run: dict[str, Any]) -> list[str]:
    """The issue's rule: httpx unless it misses the CPU target and aiohttp meets it."""
    a, h = aiohttp_run["cpu_ms_per_get"], httpx_run["cpu_ms_per_get"]
    if h > TARGET_CPU_MS_PER_GET and a <= TARGET_CPU_MS_PER_GET:
        conclusion = (
            "httpx misses the CPU target and aiohttp meets it: by the issue's rule, aiohttp (shipped)."
        )
    elif h <= TARGET_CPU_MS_PER_GET:
        conclusion = (
            "httpx meets the CPU target in this run: by the issue's rule httpx would do (Airflow brings it); "
            "the shipped client is aiohttp."
        )
    else:
        conclusion = "neither meets the CPU target in this run."
    rss_a, rss_h = aiohttp_run["rss_peak_growth_mb"], httpx_run["rss_peak_growth_mb"]
    lag_a, lag_h = aiohttp_run["lag_max_s"], httpx_run["lag_max_s"]
    return [
        "aiohttp (shipped) vs httpx (benchmark only): the same client, retry policy and parsing; only the "
        "transport differs",
        row("CPU per GET", f"aiohttp {a:.3f} ms, httpx {h:.3f} ms (aiohttp / httpx = {a / h:.2f})"),
        row("RSS growth (peak)", f"aiohttp {rss_a:+.1f} MB, httpx {rss_h:+.1f} MB"),
        row("lag max", f"aiohttp {lag_a:.2f} s, httpx {lag_h:.2f} s"),
        row("→", conclusion),
    ]


def describe_pool(pool: dict[str, Any]) -> list[str]:
    bursts = sorted(pool["bursts"], key=lambda burst: burst["variant"] != "slots")
    lines = [
        f"Pool: {bursts[0]['requests']} GETs queued at once (one per recording) on {TARGET_CONNECTIONS} "
        "connections; each variant twice, interleaved"
    ]
    for b in bursts:
        lines.append(
            f"  {b['label']:46} first reply {1000 * b['first_s']:5.1f} ms, p50 {1000 * b['p50_s']:4.0f} ms, "
            f"last {1000 * b['last_s']:4.0f} ms, CPU {1000 * b['cpu_s'] / b['requests']:.3f} ms/GET"
        )
    return [*lines, f"  TCP connections, all {len(bursts)} bursts: {pool['connections']}"]


def describe_imports(imports: dict[str, Any]) -> list[str]:
    ok = imports["ratio"] <= TARGET_IMPORT_RATIO
    heavy = ", ".join(imports["heavy"]) or "none"
    return [
        f"Import cost at DAG-parse time (median of {imports['repetitions']} fresh interpreters)",
        row("import airflow.sdk", f"{1000 * imports['sdk_s']:.0f} ms"),
        row(
            "+ operator and sensor",
            f"{1000 * imports['ours_s']:.1f} ms (telnyx_provider.operators.recording, ",
        )
        + "telnyx_provider.sensors.recording)",
        row("ratio", f"{imports['ratio']:.4f} (target ≤ {TARGET_IMPORT_RATIO}) [{verdict(ok)}]"),
        row("modules they add", ", ".join(imports["new_modules"])),
        row(
            "heavy ones among them",
            f"{heavy} [{verdict(not imports['heavy'])}] (looked for {', '.join(HEAVY_AT_PARSE_TIME)} ",
        )
        + "(the list above); airflow.sdk itself loads httpx: "
        + f"{imports['httpx_by_sdk']}, aiohttp: {imports['aiohttp_by_sdk']})",
    ]


def targets_table(figures: dict[str, Any]) -> list[str]:
    """The issue's targets against the figures of this run, as Markdown table rows."""
    rows = ["| Target (issue 4) | Measured | |", "| --- | --- | --- |"]

    def add(target: str, measured: str, ok: bool) -> None:
        rows.append(f"| {target} | {measured} | {verdict(ok)} |")

    shared, own = figures["shared"], figures["own"]
    for run, label in ((shared, "shared polls"), (own, "own polls")):
        n = run["waits"]
        add(
            f"RSS growth ≤ {TARGET_RSS_MB_PER_1000 * n / 1000:g} MB for {n} waits ({label})",
            f"{run['rss_peak_growth_mb']:+.1f} MB (peak)",
            run["rss_peak_growth_mb"] <= TARGET_RSS_MB_PER_1000 * n / 1000,
        )
    add(
        f"TCP connections ≤ pool size ({TARGET_CONNECTIONS})",
        f"{shared['connections']} / {own['connections']} (shared / own polls)",
        max(shared["connections"], own["connections"]) <= TARGET_CONNECTIONS,
    )
    add(
        f"shared polls: ≤ {TARGET_SHARED_PER_LOOK} requests per wait per interval",
        f"{shared['requests_per_look']:.4f} ({shared['gets']} requests for {shared['looks']} looks)",
        shared["requests_per_look"] <= TARGET_SHARED_PER_LOOK,
    )
    add(
        f"shared polls: CPU ≤ {TARGET_CPU_MS_PER_GET} ms per look",
        f"{shared['cpu_ms_per_look']:.3f} ms ({shared['cpu_ms_per_get']:.1f} ms per request)",
        shared["cpu_ms_per_look"] <= TARGET_CPU_MS_PER_GET,
    )
    add(
        "own polls: GETs per recording within one of the minimum",
        f"mean {own['gets_per_recording_mean']:.2f}; off by more than one: {own['off_by_more_than_one']}",
        own["off_by_more_than_one"] == 0,
    )
    add(
        f"own polls: CPU ≤ {TARGET_CPU_MS_PER_GET} ms per GET (aiohttp, shipped)",
        f"{own['cpu_ms_per_get']:.3f} ms",
        own["cpu_ms_per_get"] <= TARGET_CPU_MS_PER_GET,
    )
    if "httpx" in figures:
        hx = figures["httpx"]["cpu_ms_per_get"]
        rows.append(
            f"| (for comparison) CPU ≤ {TARGET_CPU_MS_PER_GET} ms per GET over httpx (benchmark only, not "
            f"shipped) | {hx:.3f} ms | {'meets' if hx <= TARGET_CPU_MS_PER_GET else 'misses'} |"
        )
    names = {"shared": "shared", "own": "own", "big_shared": "shared", "big_own": "own"}
    for name, label in names.items():
        run = figures.get(name)
        if run is None:
            continue
        limit = run["interval"] + LAG_SLACK_S
        add(
            f"every event within interval + {LAG_SLACK_S:g} s ({run['waits']} waits, {label} polls, "
            f"{limit:g} s)",
            f"max {run['lag_max_s']:.2f} s, p50 {run['lag_p50_s']:.2f} s",
            run["lag_max_s"] <= limit and run["fired"] == run["waits"],
        )
    for name, label in (("big_shared", "shared"), ("big_own", "own")):
        big = figures.get(name)
        if big is None:
            continue
        add(
            f"RSS growth ≤ {TARGET_RSS_MB_BIG:g} MB for {big['waits']} waits ({label} polls)",
            f"{big['rss_peak_growth_mb']:+.1f} MB (peak)",
            big["rss_peak_growth_mb"] <= TARGET_RSS_MB_BIG,
        )
        per = (big["cpu_ms_per_look"], "look") if label == "shared" else (big["cpu_ms_per_get"], "GET")
        add(
            f"(same run) TCP connections; CPU ≤ {TARGET_CPU_MS_PER_GET} ms per {per[1]}",
            f"{big['connections']}; {per[0]:.3f} ms",
            big["connections"] <= TARGET_CONNECTIONS and per[0] <= TARGET_CPU_MS_PER_GET,
        )
    if "imports" in figures:
        imports = figures["imports"]
        add(
            f"import ratio ≤ {TARGET_IMPORT_RATIO}, no heavy imports at parse time",
            f"{imports['ratio']:.4f}; heavy: {', '.join(imports['heavy']) or 'none'}",
            imports["ratio"] <= TARGET_IMPORT_RATIO and not imports["heavy"],
        )
    return rows


def write_markdown(
    path: Path, command: str, header: str, table: list[str], sections: list[list[str]]
) -> None:
    text = "\n\n".join("\n".join(section) for section in sections)
    notes = ""
    if path.exists() and NOTES_MARKER in path.read_text():
        notes = "\n" + NOTES_MARKER + path.read_text().split(NOTES_MARKER, 1)[1]
    path.write_text(
        "# Deferrable waiting at scale: benchmark figures\n\n"
        "Made by `benchmarks/waiting_at_scale.py` (its docstring says what is measured and how):\n\n"
        f"```bash\n{command}\n```\n\n{header}\n\n" + "\n".join(table) + f"\n\n```text\n{text}\n```\n" + notes
    )


# -- main ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--waits", type=int, default=1000, help="waits of the main runs (default: %(default)s)"
    )
    parser.add_argument(
        "--interval", type=float, default=1.0, help="their poll interval, s (default: %(default)s)"
    )
    parser.add_argument(
        "--length", type=float, default=4.0, help="their recording length, s (default: %(default)s)"
    )
    parser.add_argument(
        "--big-waits", type=int, default=10_000, help="waits of the big run (default: %(default)s)"
    )
    parser.add_argument(
        "--big-interval", type=float, default=10.0, help="its interval, s (default: %(default)s)"
    )
    parser.add_argument(
        "--big-length",
        type=float,
        default=15.0,
        help="its recording length, s: recordings then end after the triggers started (starting ten thousand "
        "takes several seconds), so the triggers wait and poll (default: %(default)s)",
    )
    parser.add_argument("--skip-10k", action="store_true", help="skip the big run")
    parser.add_argument("--skip-http", action="store_true", help="skip the HttpSensorTrigger comparison")
    parser.add_argument(
        "--skip-httpx", action="store_true", help="skip the httpx transport (benchmark only) comparison"
    )
    parser.add_argument("--skip-pool", action="store_true", help="skip the queued burst")
    parser.add_argument("--skip-imports", action="store_true", help="skip the import cost")
    parser.add_argument("--import-repetitions", type=int, default=7, help="(default: %(default)s)")
    parser.add_argument(
        "--tracemalloc",
        type=Path,
        help="trace the main runs' allocations (slower) and write where the memory of the waits goes to this "
        "file (shared polls) and FILE.own: tracemalloc snapshots while they wait and after they fired, "
        "compared with one before they were built",
    )
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    parser.add_argument("--markdown", type=Path, help="also write the printed figures to this Markdown file")
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="telnyx-bench-"))
    os.environ.update({k: v for k, v in airflow_env(workdir).items() if k.startswith("AIRFLOW")})
    import airflow

    import telnyx_provider

    load_start = os.getloadavg()[0]
    header = (
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; CPython {platform.python_version()}, Airflow "
        f"{airflow.__version__}, telnyx_provider {telnyx_provider.__version__}, {os.cpu_count()} CPUs, "
        f"loopback only; load average {load_start:.2f} at the start{{end}}. CPU figures are process CPU "
        "time (user + system). Run in a virtualenv with this project installed with its `benchmark` extra, "
        "as `make benchmark` does."
    )
    print(f"{header.replace('{end}', '')}\nLogs of the trigger processes: {workdir}", flush=True)
    figures: dict[str, Any] = {"argv": sys.argv[1:], "header": header}
    sections: list[list[str]] = []

    def show(lines: list[str]) -> None:
        sections.append(lines)
        print("\n" + "\n".join(lines), flush=True)

    own_trace = args.tracemalloc.with_name(args.tracemalloc.name + ".own") if args.tracemalloc else None
    shared = figures["shared"] = run_waits(
        "telnyx", args.waits, args.interval, args.length, workdir, args.tracemalloc
    )
    show(describe_waits(shared, "RecordingCompletedTrigger with shared polls (the default)"))
    own = figures["own"] = run_waits("telnyx-own", args.waits, args.interval, args.length, workdir, own_trace)
    show(describe_waits(own, "RecordingCompletedTrigger polling on its own (shared_polls false)"))
    if not args.skip_pool:
        figures["pool"] = run_pool_burst(args.waits, workdir)
        show(describe_pool(figures["pool"]))
    if not args.skip_httpx:
        hx = figures["httpx"] = run_waits("telnyx-httpx", args.waits, args.interval, args.length, workdir)
        show(
            describe_waits(
                hx, "RecordingCompletedTrigger over the httpx transport (benchmark only, own polls)"
            )
        )
        show(describe_transports(own, hx))
    if not args.skip_http:
        http = figures["http"] = run_waits("http", args.waits, args.interval, args.length, workdir)
        show(describe_waits(http, "Airflow's HttpSensorTrigger (apache-airflow-providers-http)"))
        show(describe_comparison(own, http))
    if not args.skip_10k:
        for name, kind, title in (
            ("big_shared", "telnyx", "RecordingCompletedTrigger at scale, shared polls"),
            ("big_own", "telnyx-own", "RecordingCompletedTrigger at scale, polling on its own"),
        ):
            figures[name] = run_waits(kind, args.big_waits, args.big_interval, args.big_length, workdir)
            show(describe_waits(figures[name], title))
    if not args.skip_imports:
        figures["imports"] = measure_imports(args.import_repetitions, workdir)
        show(describe_imports(figures["imports"]))
    # Other processes may share the CPUs: say how busy the machine was when the runs ended, too.
    header = header.replace("{end}", f", {os.getloadavg()[0]:.2f} at the end")
    figures["header"] = header
    table = targets_table(figures)
    print("\n" + "\n".join(table), flush=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    if args.markdown:
        command = shlex.join(["python", "benchmarks/waiting_at_scale.py", *sys.argv[1:]])
        write_markdown(args.markdown, command, header, table, sections)
    failures = memory_failures(figures, traced=args.tracemalloc is not None)
    for failure in failures:
        print(f"FAIL: {failure}", flush=True)
    return 1 if failures else 0


def memory_failures(figures: dict[str, Any], *, traced: bool) -> list[str]:
    """The memory targets this run missed (issue 17: a regression to +16 MB per 1,000 waits went unnoticed).

    The growth measured includes the one-time cost (client, TLS context, pooled connections), so it is held
    to the per-wait target: stricter than the target itself. A traced run is not checked (tracemalloc's
    own bookkeeping inflates RSS).
    """
    failures = []
    runs = [] if traced else [("shared", TARGET_RSS_MB_PER_1000, 1000), ("own", TARGET_RSS_MB_PER_1000, 1000)]
    runs += [("big_shared", TARGET_RSS_MB_BIG, 10_000), ("big_own", TARGET_RSS_MB_BIG, 10_000)]
    for name, target, per in runs:
        run = figures.get(name)
        if run is None:
            continue
        limit = target * max(1.0, run["waits"] / per)
        if run["rss_peak_growth_mb"] > limit:
            failures.append(
                f"{run['waits']:,} waits ({name}) grew the trigger process by "
                f"{run['rss_peak_growth_mb']:+.1f} MB (limit {limit:g} MB); rerun with --tracemalloc FILE "
                "to see where the memory goes"
            )
    return failures


if __name__ == "__main__":
    sys.exit(main())
