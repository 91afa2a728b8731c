"""The scenarios of the distributed system test, in the order they run (issue 16's numbers)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.system.distributed import events, kills, triggerers, waits, workers

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.system.checks import Checks
    from tests.system.distributed.cluster import Cluster

SCENARIOS: list[tuple[str, str, Callable[[Checks, Cluster], None]]] = [
    ("smoke", "a few deferred waits on Celery workers and two triggerers", waits.smoke),
    ("6", "execution_timeout while deferred: the operator stops, the sensor leaves alone",
     kills.execution_timeout),
    ("2", "deferred waits marked failed: one stop each, whichever triggerer (or none) holds them",
     kills.marked_failed),
    ("3", "Celery workers SIGKILLed between the start's POST and storing its SID, and mid-wait in poke mode",
     workers.worker_killed_mid_start),
    ("1", "deferred waits through a triggerer SIGKILL and a SIGSTOP/SIGCONT reassignment",
     triggerers.failover),
    ("5", "the polling event trigger while each triggerer is SIGKILLed and restarted", events.polling),
    ("4", "signed callbacks over the API-server workers, replayed across workers and an API-server restart",
     events.callbacks),
]  # fmt: skip

#: Scenarios run only when named (``--only NAME``); none today.
PENDING: list[tuple[str, str, Callable[[Checks, Cluster], None]]] = []
