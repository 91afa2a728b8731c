"""RecordingsFinishedTrigger killed with SIGKILL at its worst moments, on both paths Airflow 3.3 runs it by.

Each triggerer run is a process of its own (``watcher_process.py``) whose asset state store is a SQLite file
kept across runs. Three restarts: killed between a listing and storing its state, killed after firing
events and before storing again, down for longer than ``lookback`` while recordings finish. Every recording
that finished on the sandbox is reported exactly once, counted from the events table the runs append to.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING

import pytest

from tests.conftest import REPO
from tests.triggers.test_recordings_finished_trigger import polls, start_recording, status_of

if TYPE_CHECKING:
    from pathlib import Path

LOOKBACK = 3.0
MODES = [
    pytest.param("run", id="run-loop"),
    pytest.param("shared", id="shared-stream"),
]


@pytest.fixture(autouse=True)
def _not_on_airflow_31():
    import airflow

    if airflow.__version__.startswith("3.1."):
        pytest.skip("a trigger process outside a triggerer reads connections the 3.2+ way only")


class Watcher:
    """One triggerer run: the watcher process, its gated state writes, and SIGKILL."""

    def __init__(self, path: Path, mode: str, kwargs: dict[str, object], run: int) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "provider")])}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.triggers.watcher_process",
                str(path),
                mode,
                json.dumps(kwargs),
                str(run),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("@@ "):
                self.lines.put(line[3:].strip())
        self.lines.put("EXIT")

    def expect(self, what: str, timeout: float = 60.0) -> str:
        """The next line of the process; it must start with ``what``."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"the watcher did not say {what!r} within {timeout} s")
        assert line.startswith(what), f"expected {what!r}, got {line!r}"
        return line

    def store(self) -> None:
        """Let the pending state write go through, and wait until it is written."""
        self.expect("STORE ")
        self.answer_go()
        self.expect("STORED ")

    def answer_go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def kill(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(30)


@pytest.fixture
def watchers():
    started: list[Watcher] = []

    def start(*args: object) -> Watcher:
        watcher = Watcher(*args)  # type: ignore[arg-type]
        started.append(watcher)
        return watcher

    yield start
    for watcher in started:
        watcher.kill()


def events_by_run(path: Path) -> dict[int, list[str]]:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT run, sid FROM events ORDER BY n").fetchall()
    runs: dict[int, list[str]] = {}
    for run, sid in rows:
        runs.setdefault(run, []).append(sid)
    return runs


def stored_state(path: Path) -> dict[str, object]:
    with sqlite3.connect(path) as db:
        row = db.execute("SELECT value FROM state").fetchone()
    return json.loads(row[0]) if row else {}


def wait_until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


@pytest.mark.parametrize("mode", MODES)
def test_every_finished_recording_is_reported_once_across_three_sigkilled_restarts(
    sandbox, tmp_path, watchers, mode
):
    if mode == "shared":
        pytest.importorskip("airflow.triggers.shared_stream", reason="shared polls are Airflow 3.3+")
    path = tmp_path / "asset-state.db"
    kwargs = {"account_sid": sandbox.account_sid, "poll_interval": 0.2, "lookback": LOOKBACK, "overlap": 1.0}
    # Run 1: the baseline is stored; three recordings start (stored as in progress); two finish; killed
    # between the listing that saw them finish and storing it.
    first = watchers(path, mode, kwargs, 1)
    first.store()
    (call1, r1), (call2, r2), (call4, r4) = (start_recording(sandbox) for _ in range(3))
    while set(stored_state(path).get("pending", {})) != {r1, r2, r4}:
        first.store()
    sandbox.hangup(call1)
    sandbox.hangup(call2)
    wait_until(lambda: status_of(sandbox, r1) == status_of(sandbox, r2) == "completed")
    first.expect("STORE ")  # the listing that saw them finish, not yet stored
    first.kill()

    # Run 2: their report is stored, the two events fire; killed before anything else is stored.
    second = watchers(path, mode, kwargs, 2)
    second.store()
    fired = {second.expect("EVENT ").split()[1], second.expect("EVENT ").split()[1]}
    assert fired == {r1, r2}
    second.kill()

    # Down for longer than lookback: a recording created and finished meanwhile, one in progress finishes.
    call3, r3 = start_recording(sandbox)
    down_since = time.monotonic()
    sandbox.hangup(call3)
    sandbox.hangup(call4)
    wait_until(lambda: status_of(sandbox, r3) == status_of(sandbox, r4) == "completed")
    wait_until(lambda: time.monotonic() - down_since > LOOKBACK + 1)

    # Run 3: both are reported; killed right after.
    third = watchers(path, mode, kwargs, 3)
    third.store()
    fired = {third.expect("EVENT ").split()[1], third.expect("EVENT ").split()[1]}
    assert fired == {r3, r4}
    third.kill()

    # Run 4: several listings, nothing more to report.
    fourth = watchers(path, mode, kwargs, 4)
    before = polls(sandbox)
    wait_until(lambda: polls(sandbox) >= before + 5)
    fourth.kill()

    runs = events_by_run(path)
    assert [sorted(runs.get(run, [])) for run in (1, 2, 3, 4)] == [[], sorted([r1, r2]), sorted([r3, r4]), []]
    finished_on_the_sandbox = [sid for sid in (r1, r2, r3, r4) if status_of(sandbox, sid) == "completed"]
    assert sorted(sid for sids in runs.values() for sid in sids) == sorted(finished_on_the_sandbox)


def drive(watcher: Watcher, condition, timeout: float = 60.0) -> None:
    """Let every state write of ``watcher`` through until ``condition()`` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        try:
            line = watcher.lines.get(timeout=0.05)
        except queue.Empty:
            continue
        if line.startswith("STORE "):
            watcher.answer_go()


@pytest.mark.parametrize("mode", MODES)
def test_a_first_recording_made_while_down_longer_than_lookback_is_reported(
    sandbox, tmp_path, watchers, mode
):
    """Review finding: a watcher that had seen no recording yet listed from ``now - lookback`` after a
    restart, so the account's first recordings, created while it was down longer than that, were lost."""
    if mode == "shared":
        pytest.importorskip("airflow.triggers.shared_stream", reason="shared polls are Airflow 3.3+")
    path = tmp_path / "asset-state.db"
    kwargs = {"account_sid": sandbox.account_sid, "poll_interval": 0.2, "lookback": LOOKBACK, "overlap": 1.0}
    first = watchers(path, mode, kwargs, 1)
    first.store()  # the baseline of an account without recordings
    first.kill()

    call, sid = start_recording(sandbox)
    created = time.monotonic()
    sandbox.hangup(call)
    wait_until(lambda: status_of(sandbox, sid) == "completed")
    wait_until(lambda: time.monotonic() - created > LOOKBACK + 1)

    second = watchers(path, mode, kwargs, 2)
    before = polls(sandbox)
    # Five listings at least; up to twenty while no event has come (it comes with the first, once fixed).
    drive(second, lambda: polls(sandbox) >= before + (5 if events_by_run(path) else 20))
    second.kill()
    assert events_by_run(path) == {2: [sid]}
