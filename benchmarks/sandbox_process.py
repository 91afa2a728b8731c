"""The sandbox CLI in its own process, shared by the benchmark scripts (waiting_at_scale, soak_faults)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from typing import Any


class SandboxProcess:
    """``python -m telnyx_provider.sandbox`` on a free loopback port, with ``calls`` live calls at start.

    :param calls: live calls to create at start (their sids are in ``call_sids``).
    :param options: further CLI flags (recording length, processing delay, faults...).
    :param env: the process environment (default: this one's).
    """

    def __init__(self, calls: int, options: list[str], env: dict[str, str] | None = None) -> None:
        command = [sys.executable, "-m", "telnyx_provider.sandbox", "--host", "127.0.0.1", "--port", "0"]
        command += [*options, "--calls", str(calls)]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
        watchdog = threading.Timer(60, self.stop)  # a sandbox that never announces itself is stopped
        watchdog.start()
        self.call_sids: list[str] = []
        info: dict[str, str] = {}
        try:
            assert self.process.stdout is not None
            for line in self.process.stdout:
                if line.startswith("export "):
                    break
                name, _, value = line.strip().partition(": ")
                if name == "call_sid":
                    self.call_sids.append(value)
                elif name:
                    info[name] = value
        finally:
            watchdog.cancel()
        if "base_url" not in info or len(self.call_sids) != calls:
            self.stop()
            raise RuntimeError(f"the sandbox did not start (status {self.process.poll()})")
        self.base_url, self.api_key, self.account_sid = info["base_url"], info["api_key"], info["account_sid"]
        self.public_key = info.get("public_key")  # the key that verifies its signed callbacks, if it signs
        self.origin = self.base_url.removesuffix("/v2")

    def conn_json(self, extra: dict[str, Any] | None = None) -> str:
        """The ``telnyx`` connection (what ``Sandbox.airflow_conn_json()`` gives, with ``extra`` if given)."""
        fields: dict[str, Any] = {"host": self.base_url, "login": self.account_sid, "password": self.api_key}
        if extra:
            fields["extra"] = extra
        return json.dumps({"conn_type": "telnyx", **fields})

    def http_conn_json(self) -> str:
        """An ``http`` connection to the sandbox for ``HttpSensorTrigger``, the bearer header in extra."""
        host, _, port = self.origin.removeprefix("http://").rpartition(":")
        extra = {"Authorization": f"Bearer {self.api_key}"}
        return json.dumps(
            {"conn_type": "http", "host": host, "port": int(port), "schema": "http", "extra": extra}
        )

    def stats(self) -> dict[str, Any]:
        """``stats()`` over the control surface (one new connection, which callers discount)."""
        with urllib.request.urlopen(f"{self.origin}/_sandbox/stats", timeout=60) as reply:
            result: dict[str, Any] = json.load(reply)
        return result

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the sandbox process has used."""
        with open(f"/proc/{self.process.pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        """Interrupt the sandbox (it exits cleanly on SIGINT); kill it if it does not."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
