"""The distributed deployment: PostgreSQL, Redis, Celery workers, two triggerers, several API-server workers.

:func:`deploy` starts the servers, migrates the database, stores the connection and starts every Airflow
component as its own process group of the :class:`~tests.system.deployment.Deployment` (so each is stopped
by its PID at the end, also on failure). Heartbeat thresholds are low so that a frozen triggerer's triggers
move to the other one in seconds, and a SIGKILLed Celery worker's task is failed (and retried) quickly.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tests.system.clients import AirflowApi, SandboxClient, wait_for
from tests.system.deployment import Deployment

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.system.distributed.services import Services
    from tests.system.run import Clock

HERE = Path(__file__).resolve().parent
#: The DAG files this deployment serves: its own, and the system test's polled-recordings DAG.
DAG_SOURCES = (HERE / "dags", HERE.parent / "dags" / "system_telnyx_polled_recordings.py")
TRIGGERERS = ("triggerer-1", "triggerer-2")
WORKERS = ("worker-1", "worker-2")
API_WORKERS = 2
#: Seconds after which a triggerer that has not heartbeated counts as gone (Airflow's default: 30).
TRIGGERER_STALE_AFTER = 15
#: Seconds after which a task without a heartbeat is failed (Airflow's default: 300).
TASK_STALE_AFTER = 30


def settings(services: Services) -> dict[str, str]:
    """The environment every component shares (on top of the single-machine system test's)."""
    return {
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": services.database_url,
        "AIRFLOW__DATABASE__SQL_ALCHEMY_POOL_SIZE": "3",
        "AIRFLOW__CELERY__BROKER_URL": services.broker_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": services.result_backend,
        "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "86400",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": os.environ.get("TELNYX_DIST_WORKER_CONCURRENCY", "4"),
        "AIRFLOW__CORE__PARALLELISM": "16",
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "64",
        "AIRFLOW__API__WORKERS": str(API_WORKERS),
        "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
        "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": str(TRIGGERER_STALE_AFTER),
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(TASK_STALE_AFTER),
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        # Replays after an API-server restart must still fall within the signature's time tolerance.
        "AIRFLOW__TELNYX__CALLBACK_TOLERANCE_SECONDS": "1800",
    }


@dataclass
class Cluster:
    """A running distributed deployment and the clients the scenarios use."""

    deployment: Deployment
    api: AirflowApi
    sandbox: SandboxClient
    poll_sandbox: SandboxClient
    #: Each triggerer's current job id (its trigger logs are ``...attempt=N.log.trigger.<job id>.log``).
    triggerer_jobs: dict[str, int] = field(default_factory=dict)
    #: How often each process name was started (a restart's log is ``components/<name>-<n>.log``).
    starts: dict[str, int] = field(default_factory=dict)
    #: Checks a scenario leaves for after every process stopped (what only complete logs can show).
    after_stop: list[Callable[[], None]] = field(default_factory=list)

    def generation(self, name: str) -> int:
        """The next start of ``name``: 1, then 2, ..."""
        self.starts[name] = self.starts.get(name, 0) + 1
        return self.starts[name]

    def start_triggerer(self, name: str) -> int:
        """Start a triggerer and return its job id, once the database lists it alive."""
        before = set(triggerer_job_ids(self.api))
        self.deployment.start_airflow(name, kind="triggerer", generation=self.generation(name))
        new = wait_for(lambda: set(triggerer_job_ids(self.api)) - before, f"{name} to register its job", 120)
        self.triggerer_jobs[name] = max(new)
        return self.triggerer_jobs[name]

    def triggerer_named(self, job_id: int) -> str:
        """The name of the triggerer whose job this is."""
        return next(name for name, job in self.triggerer_jobs.items() if job == job_id)


def new_deployment(home: Path) -> Deployment:
    """The deployment's processes (created first: its signal handlers and ``atexit`` stop what starts)."""
    return Deployment(home, dag_sources=DAG_SOURCES)


def deploy(deployment: Deployment, services: Services, clock: Clock) -> Cluster:
    """Servers, database, connections, then every component; returns once all are healthy."""
    services.start_postgres()
    services.start_redis()
    deployment.env.update(settings(services))
    clock.phase(f"PostgreSQL on :{services.postgres_port}, Redis on :{services.redis_port}")
    argv = [sys.executable, "-m", "telnyx_provider.sandbox", "--port", "0", "--processing-delay", "0.5"]
    argv += ["--slow-seconds", "30"]  # a held reply (scenario 3's slow_after) outlasts the worker it kills
    sandbox = SandboxClient(deployment.start("sandbox", argv, pipe_stdout=True))
    poll_sandbox = SandboxClient(deployment.start("sandbox-poll", argv, pipe_stdout=True))
    deployment.env["TELNYX_POLL_ACCOUNT_SID"] = poll_sandbox.account_sid
    deployment.env["TELNYX_ACCOUNT_SID"] = sandbox.account_sid  # the callback consumer's Asset
    deployment.airflow("db-migrate", "db", "migrate", timeout=600)
    clock.phase("database migrated (PostgreSQL)")
    connections = (
        ("telnyx_default", sandbox, {}),
        ("telnyx_poll", poll_sandbox, {"max_retries": 1, "retry_max_wait": 1}),
        ("telnyx_events", sandbox, {"public_key": sandbox.public_key}),
        # Exact starts (scenario 3): the API server checks their callbacks with the public key, and the
        # workers ask its receiver what those callbacks said at receiver_url.
        (
            "telnyx_exact",
            sandbox,
            {"public_key": sandbox.public_key, "receiver_url": receiver_url(deployment)},
        ),
    )
    for conn_id, box, extra in connections:
        deployment.airflow(
            f"connections-add-{conn_id}", "connections", "add", conn_id, "--conn-type", "telnyx",
            "--conn-host", box.base_url, "--conn-login", box.account_sid, "--conn-password", box.api_key,
            "--conn-extra", json.dumps(extra),
        )  # fmt: skip
    api = AirflowApi(deployment.api_url)
    cluster = Cluster(deployment, api, sandbox, poll_sandbox)
    for name in ("api-server", "scheduler", "dag-processor"):
        deployment.start_airflow(name, generation=cluster.generation(name))
    for name in WORKERS:
        start_worker(deployment, name, cluster.generation(name))
    wait_for(lambda: api.request("GET", "/api/v2/monitor/health").ok, "the API server", 180)
    for name in TRIGGERERS:  # one after the other, so each job id is known to belong to its process
        cluster.start_triggerer(name)
    try:
        wait_for(api.all_healthy, "every Airflow component to report healthy", timeout=240)
    except TimeoutError as error:
        raise TimeoutError(f"{error}; health: {api.request('GET', '/api/v2/monitor/health').text}") from None
    clock.phase(f"healthy: API server ({API_WORKERS} workers), scheduler, DAG processor, 2 triggerers")
    files = {path.name for path in deployment.dags_folder.glob("*.py")}
    wait_for(lambda: files <= api.processed_files(), f"the DAG processor to process {len(files)} files", 180)
    wait_for(lambda: len(celery_workers(deployment)) == len(WORKERS), "both Celery workers ready", 120)
    clock.phase(f"{len(files)} DAG files processed, {len(WORKERS)} Celery workers ready")
    return cluster


def receiver_url(deployment: Deployment) -> str:
    """The receiver plugin's ``/telnyx`` base on the API server (its workers share its state)."""
    return f"{deployment.api_url}/telnyx"


def start_worker(deployment: Deployment, name: str, generation: int) -> None:
    """One Celery worker under its own node name (two on one host must not share ``celery@host``)."""
    deployment.start_airflow(
        name, kind="celery-worker", generation=generation, extra=["--celery-hostname", f"{name}@%h"]
    )


def triggerer_job_ids(api: AirflowApi) -> list[int]:
    """Ids of the triggerer jobs Airflow counts as running."""
    params = {"job_type": "TriggererJob", "job_state": "running", "limit": 100}
    return [int(job["id"]) for job in api.json("GET", "/api/v2/jobs", params=params)["jobs"]]


def celery_workers(deployment: Deployment) -> set[str]:
    """The workers whose log says they are ready (``<name>@host ready.``)."""
    ready = set()
    for name in WORKERS:
        for log in deployment.component_logs.glob(f"{name}*.log"):
            if " ready." in log.read_text(errors="replace"):
                ready.add(name)
    return ready
