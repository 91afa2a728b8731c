"""A real Airflow deployment in a throwaway AIRFLOW_HOME: each component its own process group.

Every process started here is stopped by its process group at the end, also when the run fails or is
interrupted (``stop_all`` is called from ``finally``, from ``atexit`` and on SIGINT/SIGTERM).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

REPO = Path(__file__).resolve().parents[2]
#: The DAG files the deployment serves: the examples users copy, and the system test's own.
DAG_SOURCES = (REPO / "dags_examples", REPO / "tests" / "system" / "dags")

#: Each Airflow component: its CLI arguments (``--skip-serve-logs`` keeps 8793/8794 closed).
COMPONENTS = {
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer", "--skip-serve-logs"],
    "celery-worker": ["celery", "worker", "--skip-serve-logs"],
}


#: Seconds a process group gets to exit after its stop signal, before SIGKILL.
STOP_GRACE = 15.0


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


class Deployment:
    """Processes of one run: the sandbox and the Airflow components, with their logs under ``home``.

    :param home: the throwaway AIRFLOW_HOME (logs land in ``home / "logs"`` and ``home / "components"``).
    :param settings: environment variables replacing the defaults (another executor, database, ...).
    :param dag_sources: the DAG files the deployment serves: folders (every ``*.py``) or single files.
    """

    def __init__(
        self,
        home: Path,
        *,
        settings: dict[str, str] | None = None,
        dag_sources: Sequence[Path] = DAG_SOURCES,
    ) -> None:
        self.home = home
        self.component_logs = home / "components"
        self.component_logs.mkdir(parents=True, exist_ok=True)
        self.dags_folder = home / "dags"
        self.dags_folder.mkdir(exist_ok=True)
        for folder in dag_sources:
            for source in [folder] if folder.is_file() else sorted(folder.glob("*.py")):
                (self.dags_folder / source.name).write_bytes(source.read_bytes())
        self.api_port = free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        #: The current process of each name (a restarted component replaces its predecessor here).
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        #: Every process started, with its name, until it is known to be stopped.
        self._running: list[tuple[str, subprocess.Popen[bytes]]] = []
        #: Servers Airflow needs (a database, a broker): stopped last, with their own signal.
        self.services: dict[str, int] = {}
        self.env = self._environment()
        self.env.update(settings or {})
        #: Set once a stop of everything began: further SIGINT/SIGTERM must not cut it short.
        self._stopping = False
        atexit.register(self.stop_all)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._interrupted)

    def _environment(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": "4",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home / 'airflow.db'}",
                "AIRFLOW__CORE__FERNET_KEY": _fernet_key(),
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__API__BASE_URL": self.api_url,
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
                "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def _interrupted(self, signum: int, frame: object) -> None:
        if self._stopping:  # an impatient second Ctrl-C: the teardown already under way must finish
            print(f"system test: stopping every process already (signal {signum} ignored)", file=sys.stderr)
            return
        self.stop_all()
        raise SystemExit(128 + signum)

    def airflow(self, name: str, *args: str, timeout: float = 180) -> None:
        """Run one ``airflow`` CLI command to completion, its output in ``components/<name>.log``.

        :raises RuntimeError: if it fails or does not finish in time.
        """
        log = self.component_logs / f"{name}.log"
        with log.open("ab") as out:
            done = subprocess.run(
                [sys.executable, "-m", "airflow", *args],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
                start_new_session=True,
            )
        if done.returncode != 0:
            raise RuntimeError(f"airflow {args[0]} exited with {done.returncode}; see {log}")

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        generation: int = 1,
        pipe_stdout: bool = False,
        user: str | None = None,
        stop_signal: int | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a long-running process in its own process group, output to ``components/<name>.log``.

        :param pipe_stdout: keep stdout as a pipe for the caller (stderr still goes to the log).
        :param user: run it as this (unprivileged) user.
        :param stop_signal: a service: stopped with this signal after every other process has stopped.
        """
        log = self.component_logs / (f"{name}.log" if generation == 1 else f"{name}-{generation}.log")
        with log.open("ab") as out:
            process = subprocess.Popen(
                list(argv),
                env=self.env,
                stdout=subprocess.PIPE if pipe_stdout else out,
                stderr=out if pipe_stdout else subprocess.STDOUT,
                start_new_session=True,
                user=user,
                group=user,
            )
        if stop_signal is not None:
            self.services[name] = stop_signal
        self.processes[name] = process
        self._running.append((name, process))
        return process

    def start_airflow(
        self, name: str, *, generation: int = 1, kind: str | None = None, extra: Sequence[str] = ()
    ) -> subprocess.Popen[bytes]:
        """Start one Airflow component (``api-server`` or one of :data:`COMPONENTS`).

        :param name: the process's name here (and its log's); also its kind unless ``kind`` is given.
        :param kind: the component, for a second instance of one (``name="triggerer-2"``).
        :param extra: further CLI arguments.
        """
        kind = kind or name
        if kind == "api-server":
            args = ["api-server", "--host", "127.0.0.1", "--port", str(self.api_port)]
            args += ["--workers", self.env.get("AIRFLOW__API__WORKERS", "1")]
        else:
            args = COMPONENTS[kind]
        argv = [sys.executable, "-m", "airflow", *args, *extra]
        return self.start(name, argv, generation=generation)

    def kill(self, name: str, sig: int = signal.SIGKILL, wait: float = 30) -> None:
        """Send ``sig`` to a component's whole process group and wait for its leader to exit.

        What the component started is then SIGKILLed too, also the processes that moved to a group of their
        own (a Celery worker's task processes): a worker that is lost takes its tasks with it.
        """
        process = self.processes[name]
        _signal_group(process.pid, sig)
        try:
            process.wait(wait)
        except subprocess.TimeoutExpired:
            _signal_group(process.pid, signal.SIGKILL)
            process.wait(10)
        # Children of the group may outlive the leader for a moment: make sure none is left (also those
        # that moved to a group of their own, as Airflow's task processes do: same session).
        _signal_group(process.pid, signal.SIGKILL)
        _kill_session(process.pid)
        self._running = [(n, p) for n, p in self._running if p is not process]

    def pause(self, name: str) -> None:
        """Freeze a component's whole process group (SIGSTOP): alive, but its heartbeat goes stale."""
        _signal_group(self.processes[name].pid, signal.SIGSTOP)

    def resume(self, name: str) -> None:
        """Let a frozen component go on (SIGCONT)."""
        _signal_group(self.processes[name].pid, signal.SIGCONT)

    def stop_all(self) -> None:
        """Stop every process started here (SIGTERM to each group, then SIGKILL); safe to call twice.

        Services (:attr:`services`) go last, with their own signal, once their clients are gone.
        """
        self._stopping = True  # from here on, a signal leaves the teardown to finish (see _interrupted)
        running = list(self._running)
        clients = [(n, p) for n, p in running if not any(p is self.processes.get(s) for s in self.services)]
        _stop_groups(clients, {})
        _stop_groups([(n, p) for n, p in running if (n, p) not in clients], self.services)
        self._running = [(n, p) for n, p in self._running if (n, p) not in running]

    def tails(self, lines: int = 25) -> str:
        """The last ``lines`` of every component log, for a failed run."""
        parts = []
        for log in sorted(self.component_logs.glob("*.log")):
            text = log.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"----- {log.name} (last {len(text)} lines) -----\n" + "\n".join(text))
        return "\n".join(parts)


def _stop_groups(processes: list[tuple[str, subprocess.Popen[bytes]]], signals: dict[str, int]) -> None:
    """Signal each process group (SIGTERM unless ``signals`` names another), wait, then SIGKILL.

    Each process was started in a session of its own, and everything it starts stays in that session even
    when it moves to a process group of its own (Airflow's task supervisor puts every task process in its
    own group): the SIGKILL goes to every process of the session too, so no task outlives its worker.
    """
    for name, process in processes:
        # A stopped (SIGSTOP) group must be continued to act on the signal.
        _signal_group(process.pid, signals.get(name, signal.SIGTERM))
        _signal_group(process.pid, signal.SIGCONT)
    deadline = time.monotonic() + STOP_GRACE
    for _, process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(max(0.1, deadline - time.monotonic()))
    for name, process in processes:
        _signal_group(process.pid, signal.SIGKILL)
        _kill_session(process.pid)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            print(f"system test: could not stop {name} (pid {process.pid})", file=sys.stderr)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def session_members(sid: int) -> list[int]:
    """PIDs of the live processes in session ``sid`` (read from ``/proc``; empty where there is none)."""
    members = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if int(fields[3]) == sid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def _kill_session(sid: int) -> None:
    """SIGKILL every process of session ``sid`` (the processes a component started, by their PIDs)."""
    for pid in session_members(sid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
