"""``make system-test``: the example DAGs on a real Airflow, with the faults a deployment meets.

Run from the repository root with the system test's environment (``.venv-system``, where the provider is
installed from its wheel): ``.venv-system/bin/python -m tests.system.run [--keep]``. It starts the sandbox
and Airflow's API server, scheduler, DAG processor and triggerer in a throwaway AIRFLOW_HOME, runs every
DAG through the REST API only, checks what happened, stops everything it started and prints, last,
``system test: N DAG runs, M checks passed`` (exit status 1 if any check failed).
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from tests.system import archive, events
from tests.system.checks import Checks
from tests.system.clients import AirflowApi, SandboxClient, wait_for
from tests.system.deployment import Deployment
from tests.system.package_checks import (
    verify_artifact,
    verify_connection,
    verify_connection_fetched,
    verify_no_key_in_logs,
    verify_registration,
)
from tests.system.scenarios import DAG_IDS, Scenario
from tests.system.verify import verify_runs
from tests.system.verify_faults import Races, verify_retries


class Clock:
    """Prints each phase with the seconds since the start."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    def phase(self, text: str) -> None:
        print(f"[{time.monotonic() - self.start:6.1f} s] {text}", flush=True)


def deploy(
    deployment: Deployment, clock: Clock
) -> tuple[AirflowApi, SandboxClient, events.EventsSetup, archive.ArchiveSetup]:
    """Sandbox, database, connection, then the four Airflow components; returns once all are healthy."""
    sandbox_process = deployment.start(
        "sandbox",
        [sys.executable, "-m", "telnyx_provider.sandbox", "--port", "0", "--processing-delay", "0.5"],
        pipe_stdout=True,
    )
    sandbox = SandboxClient(sandbox_process)
    events_setup = events.prepare(deployment, sandbox)  # issue 11: the examples' settings, a second sandbox
    archive_setup = archive.prepare(deployment, sandbox)  # issue 18: past days of recordings, the settings
    clock.phase(f"sandbox at {sandbox.base_url}")
    deployment.airflow("db-migrate", "db", "migrate")
    clock.phase("database migrated")
    for name in ("api-server", "scheduler", "dag-processor", "triggerer"):
        deployment.start_airflow(name)
    # While they start: the key goes in as a CLI argument, never as an AIRFLOW_CONN_* variable; tasks
    # must fetch it from the database through the execution API. No DAG runs before it is stored.
    deployment.airflow(
        "connections-add", "connections", "add", "telnyx_default", "--conn-type", "telnyx",
        "--conn-host", sandbox.base_url, "--conn-login", sandbox.account_sid,
        "--conn-password", sandbox.api_key,
    )  # fmt: skip
    clock.phase("telnyx_default stored in the database")
    api = AirflowApi(deployment.api_url)
    wait_for(api.all_healthy, "every Airflow component to report healthy", timeout=120)
    clock.phase(f"API server, scheduler, DAG processor and triggerer healthy at {deployment.api_url}")

    files = {path.name for path in deployment.dags_folder.glob("*.py")}
    wait_for(lambda: files <= api.processed_files(), f"the DAG processor to process {len(files)} files", 90)
    clock.phase(f"{len(files)} DAG files processed")
    return api, sandbox, events_setup, archive_setup


def verify_dags(checks: Checks, api: AirflowApi) -> None:
    """Every DAG file imports, and every example DAG has a run in the scenario."""
    errors = api.json("GET", "/api/v2/importErrors")["import_errors"]
    checks.check(not errors, "every DAG file imports in the DAG processor", [
        f"{error['filename']}: {error['stack_trace'].strip().splitlines()[-1]}" for error in errors
    ])  # fmt: skip
    examples = {dag["dag_id"] for dag in api.json("GET", "/api/v2/dags", params={"tags": "example"})["dags"]}
    checks.check(
        examples <= set(DAG_IDS) | set(events.DAG_IDS) | set(archive.DAG_IDS),
        "every example DAG is run by the system test",
        sorted(examples - set(DAG_IDS) - set(events.DAG_IDS) - set(archive.DAG_IDS)),
    )


_TASK_ERROR = re.compile(r'"exc_type":\s*"([^"]+)",\s*"exc_value":\s*"((?:[^"\\]|\\.)*)"')


def task_errors(home: Path) -> str:
    """The exceptions tasks failed with, once per task and message, for a failed run."""
    found: dict[str, set[str]] = {}
    for log in sorted((home / "logs").glob("dag_id=*/**/attempt=*.log")):
        parts = {part.split("=", 1)[0]: part.split("=", 1)[1] for part in log.parts if "=" in part}
        where = f"{parts.get('dag_id')}.{parts.get('task_id')}"
        for kind, message in _TASK_ERROR.findall(log.read_text(errors="replace")):
            found.setdefault(where, set()).add(f"{kind}: {message[:300]}")
    lines = [f"  {where}: {error}" for where, errors in found.items() for error in sorted(errors)]
    return "----- exceptions in task logs -----\n" + ("\n".join(lines) or "  (none)")


def report(checks: Checks, deployment: Deployment, *, failed: bool, keep: bool) -> None:
    """After a failed run: the component logs' tails, the tasks' exceptions and every failed check (the home
    is kept); after a passing one the home is removed unless ``keep``."""
    home = deployment.home
    if failed:
        print(deployment.tails(), flush=True)
        print(task_errors(home), flush=True)
        print(f"{len(checks.failures)} checks FAILED; logs kept in {home}:", flush=True)
        for failure in checks.failures:
            print(f"  - {failure[:800]}", flush=True)
    elif keep:
        print(f"logs kept in {home}", flush=True)
    else:
        shutil.rmtree(home, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """Run the system test; the exit status says whether every check passed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--keep", action="store_true", help="keep the throwaway AIRFLOW_HOME after a passing run"
    )
    args = parser.parse_args(argv)
    clock, checks = Clock(), Checks()
    home = Path(tempfile.mkdtemp(prefix="telnyx-system-test-"))
    print(f"system test: AIRFLOW_HOME={home}", flush=True)
    print("installed provider:", flush=True)
    version = verify_artifact(checks)
    deployment = Deployment(home)
    runs = 0
    keys: list[str] = []
    crashed = False
    try:
        api, sandbox, events_setup, archive_setup = deploy(deployment, clock)
        keys = [sandbox.api_key, events_setup.poll_sandbox.api_key]
        # Before the runs: on SQLite, a connection test while tasks start can stall the API server for
        # seconds (seen once: 23 s), and its workers' execution API calls with it.
        print("DAG files, provider registration, connection form and test button:", flush=True)
        verify_dags(checks, api)
        verify_registration(checks, api, version)
        keys.append(verify_connection(checks, api, sandbox))
        clock.phase("REST checks done")
        scenario = Scenario(api, sandbox, deployment)
        scenario.trigger_all()
        clock.phase(f"{sum(1 for run in scenario.runs.values() if run.run_id)} DAG runs triggered")
        pending = scenario.play()
        runs = sum(1 for run in scenario.runs.values() if run.run_id)
        clock.phase(f"{runs} DAG runs watched")
        checks.check(not pending, "every run ended in time", pending)
        races = Races(sorted(deployment.component_logs.glob("scheduler*.log")))
        verify_runs(checks, scenario, races)
        verify_retries(checks, scenario, races)
        events.run(checks, api, sandbox, events_setup, deployment)  # issue 11: event-driven recordings
        clock.phase("event-driven recordings checked")
        print("the archive: a daily DAG backfilling past days (catchup), then retention:", flush=True)
        archive.run(checks, api, sandbox, archive_setup)
        clock.phase("archive backfill checked")
    except Exception:
        crashed = True
        checks.check(False, "the system test ran to the end", traceback.format_exc())
    except BaseException:  # SIGINT/SIGTERM (SystemExit from the handler) or Ctrl-C
        print(f"system test: interrupted; logs kept in {home}", flush=True)
        raise
    finally:
        deployment.stop_all()
        clock.phase("every process stopped")
    if keys:
        print("the connection and its key, in the logs of the whole run:", flush=True)
        verify_connection_fetched(checks, deployment.component_logs / "api-server.log")
        verify_no_key_in_logs(checks, home, keys)
    report(checks, deployment, failed=bool(checks.failures) or crashed, keep=args.keep)
    print(f"system test: {runs} DAG runs, {checks.passed} checks passed", flush=True)
    return 1 if checks.failures else 0


if __name__ == "__main__":
    sys.exit(main())
