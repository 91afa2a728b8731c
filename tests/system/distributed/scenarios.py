"""The scenarios of the distributed system test, in the order they run."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.system.distributed import waits

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.system.checks import Checks
    from tests.system.distributed.cluster import Cluster

SCENARIOS: list[tuple[str, str, Callable[[Checks, Cluster], None]]] = [
    ("smoke", "a few deferred waits on Celery workers and two triggerers", waits.smoke),
]
