"""PostgreSQL and Redis for the distributed system test: Debian's servers, run unprivileged on loopback.

Each server runs in a throwaway directory of its own (owned by the unprivileged user it runs as), on a free
127.0.0.1 port, as a process of the :class:`~tests.system.deployment.Deployment`: it is stopped by its
process group with the rest, last (PostgreSQL with SIGINT, its "fast" shutdown, so it removes its shared
memory), also when the run fails or is interrupted.
"""

from __future__ import annotations

import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tests.system.deployment import free_port

if TYPE_CHECKING:
    from tests.system.deployment import Deployment

#: The unprivileged users Debian's packages create for their servers.
POSTGRES_USER = "postgres"
REDIS_USER = "redis"


def postgres_bin() -> Path:
    """The newest ``/usr/lib/postgresql/<version>/bin`` (Debian's ``postgresql`` package)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if not found:
        raise RuntimeError("PostgreSQL is not installed: apt-get install -y postgresql")
    return found[-1].parent


def _throwaway_dir(prefix: str, user: str) -> Path:
    """A fresh directory owned by ``user`` (mode 0700), outside the root-only AIRFLOW_HOME."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    entry = pwd.getpwnam(user)
    shutil.chown(path, entry.pw_uid, entry.pw_gid)
    return path


def _wait_port(port: int, what: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} before listening")
        with socket.socket() as probe:
            probe.settimeout(1)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:g} s")


class Services:
    """The database and the broker of one run; their directories go when :meth:`remove` is called.

    :param deployment: where the servers run as processes (and are stopped).
    """

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self.dirs: list[Path] = []
        self.postgres_port = 0
        self.redis_port = 0

    @property
    def database_url(self) -> str:
        """SQLAlchemy URL of the metadata database."""
        return f"postgresql+psycopg2://airflow@127.0.0.1:{self.postgres_port}/airflow"

    @property
    def broker_url(self) -> str:
        """Celery's broker."""
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def result_backend(self) -> str:
        """Celery's result backend: the metadata database, as Airflow's docs recommend."""
        return f"db+postgresql://airflow@127.0.0.1:{self.postgres_port}/airflow"

    def start_postgres(self) -> None:
        """initdb a throwaway cluster (trust auth on loopback only), start it, create the ``airflow`` DB."""
        binaries = postgres_bin()
        data = _throwaway_dir("telnyx-pg-", POSTGRES_USER)
        self.dirs.append(data)
        log = self.deployment.component_logs / "postgres-initdb.log"
        with log.open("ab") as out:
            subprocess.run(
                [str(binaries / "initdb"), "-D", str(data / "data"), "-U", "airflow", "--auth=trust",
                 "-E", "UTF8", "--no-sync", "--locale=C.UTF-8"],
                check=True, stdout=out, stderr=subprocess.STDOUT, user=POSTGRES_USER, group=POSTGRES_USER,
                cwd=data, timeout=120,
            )  # fmt: skip
        self.postgres_port = free_port()
        # Throwaway data: durability off (fsync, synchronous commit, full pages) for a 2-core machine.
        process = self.deployment.start(
            "postgres",
            [str(binaries / "postgres"), "-D", str(data / "data"), "-p", str(self.postgres_port),
             "-h", "127.0.0.1", "-k", str(data), "-c", "max_connections=300", "-c", "fsync=off",
             "-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "shared_buffers=128MB"],
            user=POSTGRES_USER,
            stop_signal=2,  # SIGINT: fast shutdown
        )  # fmt: skip
        _wait_port(self.postgres_port, "PostgreSQL", process)
        createdb = [str(binaries / "createdb"), "-h", "127.0.0.1", "-p", str(self.postgres_port)]
        deadline = time.monotonic() + 60
        while True:  # the port opens a moment before the server accepts connections
            done = subprocess.run(
                [*createdb, "-U", "airflow", "airflow"], capture_output=True, timeout=60, check=False
            )
            if done.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"createdb failed: {done.stderr.decode(errors='replace')}")
            time.sleep(0.5)

    def start_redis(self) -> None:
        """Redis on a free loopback port, nothing saved to disk."""
        user = REDIS_USER if _has_user(REDIS_USER) else "nobody"
        work = _throwaway_dir("telnyx-redis-", user)
        self.dirs.append(work)
        self.redis_port = free_port()
        redis = shutil.which("redis-server") or "/usr/bin/redis-server"
        process = self.deployment.start(
            "redis",
            [redis, "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(work), "--protected-mode", "yes"],
            user=user,
            stop_signal=15,
        )  # fmt: skip
        _wait_port(self.redis_port, "Redis", process)

    def remove(self) -> None:
        """Delete the servers' directories (after the deployment stopped them)."""
        for path in self.dirs:
            shutil.rmtree(path, ignore_errors=True)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
