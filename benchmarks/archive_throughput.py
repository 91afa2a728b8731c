"""Benchmark: RecordingsArchiveOperator over 10,000 recordings of 60 s, at 1, 4 and 16 copies in flight.

Prints a table and writes it to ``benchmarks/ARCHIVE.md``; it is not a test. The TeXML sandbox runs in its own
process (``python -m telnyx_provider.sandbox``, so its CPU and buffers are not counted), seeded through
``POST /_sandbox/history`` with ``--recordings`` final recordings of 60 s over the past days (every source,
none absent, none pending). For each ``--workers`` value the operator archives the whole span in one
interval into a fresh local folder, in this process, while a thread samples this process's RSS every 5 ms.
Figures, measured from the benchmark's side:

- recordings archived per second (wall clock, listing included) and this process's CPU per recording;
- peak RSS growth over the RSS right before the run, and the peak itself;
- requests per archived recording from the sandbox's own counters: list pages, recording fetches (the
  fresh media link) and media GETs.

``--media-seconds`` caps the audio served per recording (the sandbox's ``--media-seconds-cap``): 60 s of
8 kHz 16-bit audio is 0.96 MB per channel, 1.4 MB on average here (channels are drawn single or dual), so
10,000 recordings write ~14 GB per run; a smaller cap keeps the recordings' 60 s duration and shrinks the
files (docs/guides/archiving.md says which cap the figures used). Run it ``nice``d on a shared machine::

    nice python benchmarks/archive_throughput.py                            # 10,000 x 60 s, 1/4/16
    nice python benchmarks/archive_throughput.py --recordings 2000 --media-seconds 10 --workers 4
    nice python benchmarks/archive_throughput.py --recordings 2000 --api-latency 0.1 --append

``--api-latency`` delays every API reply (the listing's pages and each fetch; not the media) by that many
seconds, as a distant API does: loopback has no round trip, so without it one copy at a time already keeps
this machine's CPUs busy and more copies in flight cannot help.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from download_memory import PeakRss
from sandbox_process import SandboxProcess

RESULTS = Path(__file__).resolve().parent / "ARCHIVE.md"


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def seed(origin: str, recordings: int, days: int) -> dict:
    body = {
        "days": days,
        "per_day": recordings // days,
        "audio_seconds": 60,
        "absent_rate": 0,
        "not_final": 0,
    }
    request = urllib.request.Request(
        f"{origin}/_sandbox/history",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=300) as reply:
        return dict(json.load(reply))


def counters(sandbox: SandboxProcess) -> dict[str, int]:
    stats = sandbox.stats()
    routes = stats["requests_by_route"]
    return {
        "lists": routes.get("GET /Recordings", 0),
        "fetches": routes.get("GET /Recordings/{sid}", 0),
        "media": stats["media_requests"],
    }


def run_once(sandbox: SandboxProcess, workers: int, interval: dict[str, datetime], folder: Path) -> dict:
    from telnyx_provider.transfers.recording import RecordingsArchiveOperator

    op = RecordingsArchiveOperator(
        task_id="archive", dst=str(folder), max_active_downloads=workers, **interval
    )
    before, cpu = counters(sandbox), cpu_seconds()
    began = time.perf_counter()
    with PeakRss(interval=0.005) as memory:
        result = op.execute({})
    elapsed = time.perf_counter() - began
    after = counters(sandbox)
    archived = result["downloaded"]
    stored = sum(1 for _ in folder.rglob("*.wav"))
    assert archived == result["recordings"] == stored, (archived, result["recordings"], stored)
    return {
        "workers": workers,
        "archived": archived,
        "bytes": result["downloaded_bytes"],
        "seconds": elapsed,
        "per_second": archived / elapsed,
        "cpu_ms": (cpu_seconds() - cpu) * 1000 / archived,
        "rss_growth": memory.growth,
        "rss_peak": memory.peak,
        **{name: (after[name] - before[name]) / archived for name in after},
    }


def table(rows: list[dict], header: str) -> str:
    lines = [
        header,
        "",
        "| copies in flight | archived | data | time | recordings/s | CPU/recording | peak RSS growth "
        "| peak RSS | list pages/rec | fetches/rec | media GETs/rec |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        lines.append(
            f"| {row['workers']} | {row['archived']:,} | {row['bytes'] / 1e9:.2f} GB "
            f"| {row['seconds']:.0f} s | {row['per_second']:.1f} | {row['cpu_ms']:.1f} ms "
            f"| {row['rss_growth'] / 1e6:+.1f} MB | {row['rss_peak'] / 1e6:.0f} MB "
            f"| {row['lists']:.4f} | {row['fetches']:.3f} | {row['media']:.3f} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--recordings", type=int, default=10_000, help="recordings to archive (default 10,000)"
    )
    parser.add_argument("--media-seconds", type=int, default=60, help="audio served per recording, seconds")
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1, 4, 16], help="max_active_downloads values"
    )
    parser.add_argument("--days", type=int, default=10, help="days the recordings are spread over")
    parser.add_argument("--folder", default=None, help="where to store (default: a temporary folder)")
    parser.add_argument(
        "--api-latency",
        type=float,
        default=0.0,
        help="seconds added to every API reply (the sandbox's 'slow' fault on each request, not media): "
        "a round trip to a distant API, which loopback lacks",
    )
    parser.add_argument("--no-write", action="store_true", help=f"print only; do not write {RESULTS.name}")
    parser.add_argument("--append", action="store_true", help=f"add the table to {RESULTS.name}")
    args = parser.parse_args()
    options = ["--processing-delay", "0.1", "--media-seconds-cap", str(args.media_seconds)]
    if args.api_latency > 0:
        options += ["--fault-rate", "1", "--faults", "slow", "--slow-seconds", str(args.api_latency)]
    sandbox = SandboxProcess(0, options)
    folder_root = Path(args.folder or tempfile.mkdtemp(prefix="telnyx-archive-bench-"))
    try:
        os.environ["AIRFLOW_CONN_TELNYX_DEFAULT"] = sandbox.conn_json()
        os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
        seeded = seed(sandbox.origin, args.recordings, args.days)
        today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
        interval = {"date_from": today - timedelta(days=args.days), "date_to": today}
        from telnyx_provider.transfers.recording import RecordingsArchiveOperator  # imports before measuring

        logging.getLogger("telnyx_provider").setLevel(logging.WARNING)
        logging.getLogger("airflow.task").setLevel(logging.WARNING)
        header = (
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; CPython {platform.python_version()}, "
            f"{os.cpu_count()} CPUs shared with other work, loopback; the sandbox in its own process. "
            f"{seeded['recordings']:,} recordings of 60 s over {args.days} days, media capped at "
            f"{args.media_seconds} s (8 kHz 16-bit, single or dual channel), one interval, local disk; "
            + (
                f"{args.api_latency * 1000:.0f} ms added to every API reply."
                if args.api_latency
                else "loopback latency."
            )
        )
        print(header)
        warm = folder_root / "warm"
        RecordingsArchiveOperator(  # connection, pools and imports warmed on one day
            task_id="warm", dst=str(warm), date_from=today - timedelta(days=1), date_to=today
        ).execute({})
        shutil.rmtree(warm)
        rows = []
        for workers in args.workers:
            folder = folder_root / f"run-{workers}"
            rows.append(run_once(sandbox, workers, interval, folder))
            shutil.rmtree(folder)  # a fresh destination each run: every recording is copied again
            print(table(rows[-1:], "").strip().splitlines()[-1], flush=True)
        text = table(rows, header)
        print()
        print(text)
        command = " ".join(["nice python benchmarks/archive_throughput.py", *sys.argv[1:]])
        section = f"Command: `{command}`\n\n{text}\n"
        if args.append:
            with RESULTS.open("a") as out:
                out.write(f"\n{section}")
        elif not args.no_write:
            RESULTS.write_text(f"# Archive throughput (`benchmarks/archive_throughput.py`)\n\n{section}")
    finally:
        sandbox.stop()
        if args.folder is None:
            shutil.rmtree(folder_root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
