"""Memory while storing a recording: streaming keeps peak RSS flat whatever the file's size.

Run with ``python benchmarks/download_memory.py`` (``--seconds 600 3600`` picks the recording lengths). The
sandbox runs in its own process (``SandboxProcess``, ``--media-seconds-cap`` raised), so its own buffers are
not counted. For each length, one call with ``audio_seconds`` is recorded and stored to a local folder with
``RecordingHook.download_recording``, while a thread samples this process's RSS every 2 ms; the figure is
peak RSS minus the RSS right before. For contrast, the same media is then fetched whole with
``requests.get(...).content`` (what a hand-written task often does; benchmark only, not shipped).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import platform
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sandbox_process import SandboxProcess


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRss:
    """Samples RSS in a thread; ``growth`` is the peak seen minus the RSS when sampling began."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval, self.peak, self._stop = interval, 0, threading.Event()

    def __enter__(self) -> PeakRss:
        gc.collect()
        self.start = self.peak = rss_bytes()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(self.interval)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())

    @property
    def growth(self) -> int:
        return self.peak - self.start


def create_call(origin: str, audio_seconds: int) -> str:
    body = json.dumps({"audio_seconds": audio_seconds}).encode()
    request = urllib.request.Request(
        f"{origin}/_sandbox/calls", data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as reply:
        return str(json.load(reply)["call_sid"])


def completed(hook: object, sid: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        recording = hook.get_recording(sid)  # type: ignore[attr-defined]
        if recording["status"] == "completed" and recording.get("media_url"):
            return recording
        time.sleep(0.05)
    raise RuntimeError(f"recording {sid} did not complete within {timeout} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, nargs="+", default=[60, 600, 3600], help="recording lengths")
    args = parser.parse_args()
    cap = max(args.seconds)
    sandbox = SandboxProcess(
        0, ["--recording-seconds", "0.2", "--processing-delay", "0.1", "--media-seconds-cap", str(cap)]
    )
    try:
        os.environ["AIRFLOW_CONN_TELNYX_DEFAULT"] = sandbox.conn_json()
        os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
        import requests

        from telnyx_provider.hooks.recording import RecordingHook

        hook = RecordingHook()
        print(
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; CPython {platform.python_version()}, "
            f"{os.cpu_count()} CPUs, loopback; sandbox in its own process (media cap {cap} s)."
        )
        print(f"{'audio':>8} {'file size':>12} {'streamed: peak RSS growth':>27} {'whole body: growth':>20}")
        with tempfile.TemporaryDirectory() as folder:
            warm = completed(hook, hook.start_call_recording(create_call(sandbox.origin, 1))["sid"])
            hook.download_recording(warm["sid"], f"{folder}/warm/")  # imports and pools before measuring
            for seconds in args.seconds:
                sid = hook.start_call_recording(create_call(sandbox.origin, seconds))["sid"]
                completed(hook, sid)
                with PeakRss() as streamed:
                    stored = hook.download_recording(sid, f"{folder}/{seconds}/")
                path = Path(folder, str(seconds), f"{sid}.{stored['path'].rpartition('.')[2]}")
                assert path.stat().st_size == stored["size"]
                assert hashlib.sha256(path.read_bytes()).hexdigest() == stored["sha256"]
                path.unlink()
                link = completed(hook, sid)["media_url"]
                with PeakRss() as whole:
                    body = requests.get(link, timeout=300).content
                assert len(body) == stored["size"]
                del body
                print(
                    f"{seconds:>7}s {stored['size'] / 1e6:>9.1f} MB "
                    f"{streamed.growth / 1e6:>17.1f} MB ({streamed.growth / stored['size']:>5.1%})"
                    f"{whole.growth / 1e6:>13.1f} MB ({whole.growth / stored['size']:>4.0%})"
                )
        hook.close()
    finally:
        sandbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
