"""The receiver the plugin mounts, served by two separate processes on one metadata database (what two
API-server workers are): a delivery replayed to the other worker, or after both restart, is refused."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import pytest
import requests

from tests.conftest import REPO
from tests.plugins.test_callbacks import FORM, callback, events_for

if TYPE_CHECKING:
    from collections.abc import Iterator

WORKER = textwrap.dedent(
    """
    import socket
    import uvicorn
    from telnyx_provider.plugins.callbacks import TelnyxCallbacksPlugin

    (mounted,) = TelnyxCallbacksPlugin.fastapi_apps
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    from airflow import settings
    print("DB", settings.engine.url, flush=True)
    print("PORT", sock.getsockname()[1], flush=True)
    config = uvicorn.Config(mounted["app"], log_level="warning", lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])
    """
)


class Workers:
    """API-server-like worker processes serving the plugin's receiver, each stopped by its PID."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen[str]] = []

    def start(self) -> str:
        from airflow import settings

        # The workers use the database this process uses (and reads the events from), named explicitly.
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO / "provider"), str(REPO)]),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": settings.engine.url.render_as_string(hide_password=False),
        }
        process = subprocess.Popen([sys.executable, "-c", WORKER], stdout=subprocess.PIPE, text=True, env=env)
        self.processes.append(process)
        assert process.stdout is not None
        said: dict[str, str] = {}
        while "PORT" not in said:  # Airflow may print its own lines first
            line = process.stdout.readline()
            assert line, "the worker did not start"
            if line.startswith(("DB ", "PORT ")):
                said[line.split()[0]] = line.split()[1]
        assert said["DB"] == str(settings.engine.url), "the worker opened another database"
        port = said["PORT"]
        stdout = process.stdout
        threading.Thread(target=lambda: stdout.read(), daemon=True).start()  # keep its pipe from filling
        url = f"http://127.0.0.1:{port}/recording-status"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # bound before it serves: ask until it answers
            assert process.poll() is None, "the worker died"
            try:
                requests.get(url, timeout=10)
                return url
            except requests.ConnectionError:
                time.sleep(0.05)
        pytest.fail("the worker does not answer")

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.processes.clear()


@pytest.fixture
def workers(recordings_asset_in_db, signer) -> Iterator[Workers]:
    started = Workers()
    try:
        yield started
    finally:
        started.stop_all()


def test_a_replay_to_another_worker_or_after_a_restart_is_refused_and_stored_once(workers, signer):
    first, second = workers.start(), workers.start()
    deliveries = []
    for _ in range(5):
        fields = callback()
        body = urlencode(fields).encode()
        headers = {**FORM, **signer.headers(body)}
        deliveries.append((fields, body, headers))
        assert requests.post(first, data=body, headers=headers, timeout=30).status_code == 204
        replay = requests.post(second, data=body, headers=headers, timeout=30)
        assert replay.status_code == 401, replay.text
    workers.stop_all()
    restarted = workers.start()
    for _, body, headers in deliveries:
        assert requests.post(restarted, data=body, headers=headers, timeout=30).status_code == 401
    assert [len(events_for(fields["RecordingSid"])) for fields, _, _ in deliveries] == [1] * 5
