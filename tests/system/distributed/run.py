"""``make system-test-distributed``: the provider on the deployment teams run at scale.

PostgreSQL and Redis (Debian's servers, unprivileged, on free loopback ports, throwaway data), Airflow with
the CeleryExecutor and two Celery workers, two triggerers, the scheduler, the DAG processor and the API server
with two workers; the provider installed from its wheel. Run from the repository root with the
distributed test's environment: ``.venv-distributed/bin/python -m tests.system.distributed.run [--keep]``.
Every scenario is driven through the REST API and judged from the sandbox's side and from Airflow's; every
process is stopped by its process group at the end, also on failure or interruption. It prints, last,
``distributed system test: N scenarios, M checks passed`` (exit status 1 if any check failed).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from tests.system.checks import Checks
from tests.system.distributed import scenarios
from tests.system.distributed.cluster import deploy, new_deployment
from tests.system.distributed.services import Services
from tests.system.package_checks import verify_artifact, verify_no_key_in_logs
from tests.system.run import Clock, report

if TYPE_CHECKING:
    from tests.system.distributed.cluster import Cluster


def run_scenarios(checks: Checks, cluster: Cluster, clock: Clock, only: list[str]) -> int:
    """Each scenario in turn; one that breaks fails with its traceback and the next still runs."""
    ran = 0
    for name, title, scenario in scenarios.SCENARIOS + scenarios.PENDING:
        if (only and name not in only) or (not only and (name, title, scenario) in scenarios.PENDING):
            continue
        print(f"scenario {name}: {title}", flush=True)
        ran += 1
        try:
            scenario(checks, cluster)
        except Exception:
            checks.check(False, f"scenario {name} ran to the end", traceback.format_exc())
        clock.phase(f"scenario {name} done")
    return ran


def main(argv: list[str] | None = None) -> int:
    """Run the distributed system test; the exit status says whether every check passed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the logs after a passing run")
    parser.add_argument("--only", action="append", default=[], help="run only this scenario (repeatable)")
    args = parser.parse_args(argv)
    clock, checks = Clock(), Checks()
    home = Path(tempfile.mkdtemp(prefix="telnyx-dist-test-"))
    print(f"distributed system test: AIRFLOW_HOME={home}", flush=True)
    verify_artifact(checks)
    deployment = new_deployment(home)
    services = Services(deployment)
    ran, crashed, keys = 0, False, []
    cluster: Cluster | None = None
    try:
        cluster = deploy(deployment, services, clock)
        keys = [cluster.sandbox.api_key, cluster.poll_sandbox.api_key]
        ran = run_scenarios(checks, cluster, clock, args.only)
    except Exception:
        crashed = True
        checks.check(False, "the distributed system test ran to the end", traceback.format_exc())
    except BaseException:  # SIGINT/SIGTERM (SystemExit from the handler) or Ctrl-C
        print(f"distributed system test: interrupted; logs kept in {home}", flush=True)
        raise
    finally:
        deployment.stop_all()
        services.remove()
        clock.phase("every process stopped, PostgreSQL and Redis directories removed")
    for late_check in cluster.after_stop if cluster is not None else []:
        try:
            late_check()
        except Exception:
            checks.check(False, "a check on the complete logs ran to the end", traceback.format_exc())
    if keys:
        verify_no_key_in_logs(checks, home, keys)
    report(checks, deployment, failed=bool(checks.failures) or crashed, keep=args.keep)
    for name, title, _ in scenarios.PENDING:
        if name not in args.only:
            print(f"not run: scenario {name}, {title}; DIST_ARGS='--only {name}' runs it", flush=True)
    print(f"distributed system test: {ran} scenarios, {checks.passed} checks passed", flush=True)
    return 1 if checks.failures else 0


if __name__ == "__main__":
    sys.exit(main())
