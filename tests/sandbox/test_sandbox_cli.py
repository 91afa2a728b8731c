"""The sandbox command line, run as ``python -m telnyx_provider.sandbox`` in a subprocess."""

from __future__ import annotations

import base64
import json
import os
import queue
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

from telnyx_provider.sandbox import cli
from tests.sandbox.conftest import wait_for

PROVIDER_DIR = Path(__file__).resolve().parents[2] / "provider"


def read_lines_until(process: subprocess.Popen[str], marker: str, timeout: float = 10.0) -> list[str]:
    """Collect stdout lines until one starts with ``marker`` (bounded by ``timeout``)."""
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout

    def pump() -> None:
        for line in stdout:
            lines.put(line)
        lines.put("")  # end of output: the process exited

    threading.Thread(target=pump, daemon=True).start()
    collected: list[str] = []
    while not collected or not collected[-1].startswith(marker):
        line = lines.get(timeout=timeout)
        assert line, f"process ended early (exit {process.wait()}) after {collected}"
        collected.append(line.rstrip("\n"))
    return collected


def test_cli_serves_until_sigint():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PROVIDER_DIR), os.environ.get("PYTHONPATH", "")]))
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "telnyx_provider.sandbox",
            "--port",
            "0",
            "--calls",
            "1",
            "--api-key",
            "k1",
            "--processing-delay",
            "0.1",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        lines = read_lines_until(process, "export AIRFLOW_CONN_TELNYX_DEFAULT=")
        fields = dict(line.split(": ", 1) for line in lines[:-1])
        assert fields["api_key"] == "k1"
        conn = json.loads(shlex.split(lines[-1].split("=", 1)[1])[0])
        assert conn == {
            "conn_type": "telnyx",
            "host": fields["base_url"],
            "login": fields["account_sid"],
            "password": "k1",
            "extra": {"public_key": fields["public_key"]},
        }
        assert len(base64.b64decode(fields["public_key"], validate=True)) == 32
        url = (
            f"{fields['base_url']}/texml/Accounts/{fields['account_sid']}/Calls/"
            f"{quote(fields['call_sid'], safe='')}/Recordings.json"
        )
        reply = requests.post(url, headers={"Authorization": "Bearer k1"}, timeout=5)
        assert reply.status_code == 200
        assert reply.json()["call_sid"] == fields["call_sid"]
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_cli_rejects_unknown_fault_kind(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["--faults", "429,boom"])
    assert exited.value.code == 2
    assert "boom" in capsys.readouterr().err


def test_cli_reports_a_busy_port(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert cli.main(["--port", str(taken.getsockname()[1])]) == 1
    assert "cannot listen" in capsys.readouterr().err


def test_cli_world_flags_reach_the_sandbox():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PROVIDER_DIR), os.environ.get("PYTHONPATH", "")]))
    args = ["--port", "0", "--calls", "1", "--clock-skew", "3600", "--list-lag", "30", "--max-page-size", "1"]
    args += ["--media-url-ttl", "30", "--processing-delay", "0.05"]
    process = subprocess.Popen(
        [sys.executable, "-m", "telnyx_provider.sandbox", *args], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        lines = read_lines_until(process, "export AIRFLOW_CONN_TELNYX_DEFAULT=")
        fields = dict(line.split(": ", 1) for line in lines[:-1])
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {fields['api_key']}"
        account = f"{fields['base_url']}/texml/Accounts/{fields['account_sid']}"
        started = session.post(
            f"{account}/Calls/{quote(fields['call_sid'], safe='')}/Recordings.json", timeout=5
        )
        assert started.status_code == 200
        skewed = parsedate_to_datetime(started.json()["date_created"]).timestamp()
        assert abs(skewed - time.time() - 3600) < 5
        listed = session.get(f"{account}/Recordings.json", params={"PageSize": 5}, timeout=5).json()
        assert (listed["recordings"], listed["page_size"]) == ([], 1)  # hidden by the lag; page capped
        recording = started.json()
        session.post(
            f"{fields['base_url'].removesuffix('/v2')}{recording['uri']}", data={"Status": "stopped"}
        )
        link = wait_for(
            lambda: (
                session.get(f"{account}/Recordings/{recording['sid']}.json", timeout=5)
                .json()
                .get("media_url")
            )
        )
        expires = int(link.split("Expires=")[1].split("&")[0])
        assert abs(expires - time.time() - 3600 - 30) < 5  # the service's clock, plus the ttl
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_cli_rejects_out_of_range_world_options(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["--port", "0", "--list-lag", "-1"])
    assert exited.value.code == 2
    assert "list_lag" in capsys.readouterr().err
