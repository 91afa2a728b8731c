"""``make system-test``: the example DAGs on a real Airflow, with the faults a deployment meets.

Run from the repository root with the system test's environment (``.venv-system``, where the provider is
installed from its wheel): ``.venv-system/bin/python -m tests.system.run [--keep]``. It starts the sandbox
and Airflow's API server, scheduler, DAG processor and triggerer in a throwaway AIRFLOW_HOME, runs every
DAG through the REST API only, checks what happened, stops everything it started and prints, last,
``system test: N DAG runs, M checks passed`` (exit status 1 if any check failed).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from tests.system import events
from tests.system.checks import Checks
from tests.system.clients import AirflowApi, SandboxClient, wait_for
from tests.system.deployment import Deployment
from tests.system.package_checks import (
    installed_source,
    verify_artifact,
    verify_connection,
    verify_no_key_in_logs,
    verify_registration,
)
from tests.system.scenarios import Scenario
from tests.system.verify import verify_retries, verify_runs

DAG_IDS = (
    "example_telnyx_call_recording",
    "example_telnyx_record_many_calls",
    "system_telnyx_reschedule_sensor",
    "system_telnyx_operator_deferred",
    "system_telnyx_operator_timeout",
)


class Clock:
    """Prints each phase with the seconds since the start."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    def phase(self, text: str) -> None:
        print(f"[{time.monotonic() - self.start:6.1f} s] {text}", flush=True)


def deploy(deployment: Deployment, clock: Clock) -> tuple[AirflowApi, SandboxClient, events.EventsSetup]:
    """Sandbox, database, connection, then the four Airflow components; returns once all are healthy."""
    sandbox_process = deployment.start(
        "sandbox",
        [sys.executable, "-m", "telnyx_provider.sandbox", "--port", "0", "--processing-delay", "0.5"],
        pipe_stdout=True,
    )
    sandbox = SandboxClient(sandbox_process)
    events_setup = events.prepare(deployment, sandbox)  # issue 11: the examples' settings, a second sandbox
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

    def parsed() -> bool:
        return all(api.request("GET", f"/api/v2/dags/{dag_id}").ok for dag_id in DAG_IDS)

    wait_for(parsed, f"the DAG processor to parse {len(DAG_IDS)} DAGs", timeout=90)
    clock.phase(f"{len(DAG_IDS)} DAGs parsed")
    return api, sandbox, events_setup


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
    stop_on_kill = "stop_on_kill" in installed_source(
        "triggers/recording.py"
    ) and "stop_on_kill" in installed_source("operators/recording.py")
    recording_keys = 'key="recording_sid"' in installed_source("operators/recording.py")
    deployment = Deployment(home)
    runs = 0
    keys: list[str] = []
    crashed = False
    try:
        api, sandbox, events_setup = deploy(deployment, clock)
        keys = [sandbox.api_key, events_setup.poll_sandbox.api_key]
        try:
            scenario = Scenario(api, sandbox, deployment)
            scenario.trigger_all()
            runs = len(scenario.runs)
            clock.phase(f"{runs} DAG runs triggered")
            print("provider registration, connection form and test button:", flush=True)
            verify_registration(checks, api, version)
            verify_connection(checks, api, sandbox)
            clock.phase("watching the runs")
            scenario.play()
            clock.phase("every run ended")
            verify_runs(checks, scenario, stop_on_kill=stop_on_kill, recording_keys=recording_keys)
            verify_retries(checks, scenario, sorted(deployment.component_logs.glob("scheduler*.log")))
        except Exception:  # the event-driven phase below still runs on the same deployment
            crashed = True
            checks.check(False, "the scenarios ran to the end", traceback.format_exc())
        events.run(checks, api, sandbox, events_setup, deployment)
        clock.phase("event-driven recordings checked")
    except Exception:
        crashed = True
        checks.check(False, "the system test ran to the end", traceback.format_exc())
    finally:
        deployment.stop_all()
        clock.phase("every process stopped")
    if keys:
        print("secrets:", flush=True)
        verify_no_key_in_logs(checks, home, keys)
    if checks.failures or crashed:
        print(deployment.tails(), flush=True)
        print(f"{len(checks.failures)} checks FAILED; logs kept in {home}:", flush=True)
        for failure in checks.failures:
            print(f"  - {failure[:500]}", flush=True)
    elif args.keep:
        print(f"logs kept in {home}", flush=True)
    else:
        shutil.rmtree(home, ignore_errors=True)
    print(f"system test: {runs} DAG runs, {checks.passed} checks passed", flush=True)
    return 1 if checks.failures else 0


if __name__ == "__main__":
    sys.exit(main())
