"""The system tests' teardown stops every process they started, also when interrupted (review of issue 16).

A real :class:`~tests.system.deployment.Deployment` runs in a child process (it installs signal handlers and
an ``atexit`` hook, which must not land in pytest's own process) with stand-ins for what a deployment runs:
a component slow to stop (it shrugs off SIGTERM, as a busy Airflow component may for a while), a service
stopped last (PostgreSQL, Redis), and a component whose child moves to a process group of its own, as
Airflow's task supervisor puts every task process (``supervisor.py``: ``os.setpgid(0, 0)``). The test then
interrupts the child the way a user or CI does and checks, by PID, that nothing is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import json, signal, sys, time
    from pathlib import Path

    import tests.system.deployment as deployment

    deployment.STOP_GRACE = 2.0  # seconds a group gets after SIGTERM (15 in a real run)
    home = Path(sys.argv[1])
    d = deployment.Deployment(home, dag_sources=())
    slow = "import signal, time\\n"
    slow += "signal.signal(signal.SIGTERM, lambda *a: print('TERM', flush=True))\\n"
    slow += "while True: time.sleep(0.2)"
    task = "import os, sys, time\\nos.setpgid(0, 0)\\nopen(sys.argv[1], 'w').write(str(os.getpid()))\\n"
    task += "time.sleep(600)"
    worker = "import subprocess, sys, time\\n"
    worker += f"subprocess.Popen([sys.executable, '-c', {task!r}, sys.argv[1]])\\n"
    worker += "while True: time.sleep(0.2)"
    pids = {
        "slow": d.start("slow", [sys.executable, "-c", slow]).pid,
        "service": d.start("service", [sys.executable, "-c", "import time; time.sleep(600)"],
                           stop_signal=signal.SIGINT).pid,
        "worker": d.start("worker", [sys.executable, "-c", worker, str(home / "task.pid")]).pid,
    }
    while not (home / "task.pid").exists() or not (home / "task.pid").read_text():
        time.sleep(0.05)
    pids["task"] = int((home / "task.pid").read_text())
    print(json.dumps(pids), flush=True)
    try:
        while True:
            time.sleep(0.2)
    finally:
        d.stop_all()
    """
)


def _session(sid: int) -> list[int]:
    """PIDs of the processes in session ``sid`` (the child and all it started)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid:
                members.append(int(entry.name))
    return members


def _alive(pid: int) -> bool:
    try:
        with Path(f"/proc/{pid}/stat").open() as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except OSError:
        return False


def _wait(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {seconds:g} s"
        time.sleep(0.05)


@pytest.fixture
def deployment_child(tmp_path):
    """Start the child (its own session); yields it, its PIDs and its home; kills whatever is left."""
    process = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        start_new_session=True,
        env={key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")},
    )
    started = []
    try:
        line = process.stdout.readline() if process.stdout else b""
        assert line, "the child did not start its deployment"
        pids = json.loads(line)
        started = list(pids.values())
        yield process, pids, tmp_path
    finally:
        leftovers = set(_session(process.pid)) | {pid for pid in started if _alive(pid)}
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait(10)


def test_a_stop_kills_the_task_processes_that_left_their_components_group(deployment_child):
    process, pids, _home = deployment_child
    process.send_signal(signal.SIGTERM)  # CI cancelling the job (make passes SIGTERM on to its child)
    process.wait(60)
    left = {name: pid for name, pid in pids.items() if _alive(pid)}
    assert left == {}, f"still running after the teardown: {left}"


def test_a_second_interrupt_during_the_teardown_does_not_cut_it_short(deployment_child):
    process, pids, home = deployment_child
    process.send_signal(signal.SIGINT)  # Ctrl-C
    # The teardown has begun: the slow component got its SIGTERM and is holding the teardown up.
    _wait(lambda: "TERM" in (home / "components" / "slow.log").read_text(), 30, "the teardown to begin")
    process.send_signal(signal.SIGINT)  # an impatient second Ctrl-C
    process.wait(60)
    left = {name: pid for name, pid in pids.items() if _alive(pid)}
    assert left == {}, f"still running after the teardown: {left}"
