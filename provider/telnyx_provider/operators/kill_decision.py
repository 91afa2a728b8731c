"""Whether a start task killed while it waits in poke mode stops its recording: only when its task ended.

Airflow's task runner calls ``on_kill`` from its SIGTERM handler, and the task supervisor sends SIGTERM
whenever the server says the task instance should not run any more or the supervisor itself is told to stop.
That is a user marking the task failed or succeeded, but also a user clearing it (state ``restarting``: the
next try resumes the same recording), the scheduler failing a try whose heartbeats it missed
(``up_for_retry``), the API server unreachable for ``[workers] max_failed_heartbeats`` heartbeats, and the
worker shutting down (a Celery warm shutdown, an evicted pod). Stopping the recording in those cases would
cut the call's audio short while the next try resumes it. So, like the deferred wait's ``on_kill``
(:mod:`telnyx_provider.triggers.recording_kill`), the operator asks Airflow for its task's state and stops
only when the task ended; when the state cannot be read in time it leaves the recording running.

The question goes to the task supervisor over the channel the task runner shares with the task's main
thread, and the SIGTERM handler runs *on* that thread, which may be holding the channel's lock at that moment.
So it is asked from a thread of its own, for at most :data:`LOOKUP_TIMEOUT` seconds: the supervisor follows
SIGTERM with SIGKILL 5 s later, and the stop needs its own budget.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from telnyx_provider.triggers.recording_kill import reason_for_state, state_key

if TYPE_CHECKING:
    from collections.abc import Mapping

#: Seconds the state query may take before the kill leaves the recording running.
LOOKUP_TIMEOUT = 1.0


@dataclass(frozen=True)
class TaskIdentity:
    """The task instance a kill asks about."""

    dag_id: str
    task_id: str
    run_id: str
    map_index: int

    @classmethod
    def of(cls, context: Mapping[str, Any]) -> TaskIdentity | None:
        """The identity of the task instance Airflow's task runner put in ``context`` (``None`` without one).

        :param context: the task's context.
        """
        ti = context.get("ti")
        dag_id, task_id, run_id = (getattr(ti, name, None) for name in ("dag_id", "task_id", "run_id"))
        if not (isinstance(dag_id, str) and isinstance(task_id, str) and isinstance(run_id, str)):
            return None
        map_index = getattr(ti, "map_index", None)
        return cls(dag_id, task_id, run_id, map_index if isinstance(map_index, int) else -1)


def reason_to_leave_running(identity: TaskIdentity | None, timeout: float = LOOKUP_TIMEOUT) -> str | None:
    """Why a killed task must leave its recording running, or ``None`` when its task ended (or was not run
    by Airflow's task runner: then whoever called ``on_kill`` asked for the stop).

    :param identity: the task instance (see :meth:`TaskIdentity.of`).
    :param timeout: seconds to wait for Airflow's answer.
    """
    if identity is None:
        return None
    answer: dict[str, Any] = {}

    def ask() -> None:
        try:
            answer["state"] = _task_state(identity)
        except Exception as error:
            answer["error"] = error

    asker = threading.Thread(target=ask, name="telnyx-kill-task-state", daemon=True)
    asker.start()
    asker.join(timeout)
    if asker.is_alive():
        return f"its task's state could not be read within {timeout:g} s"
    if "error" in answer:
        error = answer["error"]
        return f"its task's state could not be read ({type(error).__name__}: {error})"
    return reason_for_state(answer["state"])


def _task_state(identity: TaskIdentity) -> str | None:
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    states = RuntimeTaskInstance.get_task_states(
        dag_id=identity.dag_id,
        map_index=identity.map_index,
        task_ids=[identity.task_id],
        run_ids=[identity.run_id],
    )
    state = states[identity.run_id][state_key(identity.task_id, identity.map_index)]
    return None if state is None else str(state)
