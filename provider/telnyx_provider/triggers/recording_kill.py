"""What a killed deferred wait does with its recording: stop it only when its task was ended.

Airflow 3.3 cancels a trigger "by user action" and calls its ``on_kill`` whenever the triggerer running it
no longer finds it assigned to itself (``airflow/jobs/triggerer_job_runner.py``: ``update_triggers`` puts
every such trigger on the queue ``cancel_triggers`` drains with the user-action message). That covers a user
marking the task failed or succeeded, but also a trigger moved to another triggerer because this one's
heartbeat went stale (a triggerer frozen or overloaded for ``[triggerer] triggerer_health_check_threshold``
seconds) and a copy of a trigger that fired on the other triggerer first. Stopping the recording in those
cases would end a recording another triggerer (or the resumed task) still waits for.

Airflow 3.3.2 also cancels the trigger's task again on every exchange with its supervisor (about once a
second) until the trigger has finished, and a cancel that lands while ``on_kill`` awaits ends ``on_kill``
silently. So the work runs as a task of its own, shielded (:func:`run_shielded`): once begun, a decision and
its stop are carried out even if ``on_kill`` is interrupted.

Before stopping, the wait asks Airflow for its task's state, through the same execution-API request
Airflow's own deferrable ``ExternalTaskSensor`` makes from the triggerer
(``RuntimeTaskInstance.get_task_states``), and stops only a recording whose task has ended (``failed``,
``success``, ``skipped``, ...) and that is still live; in every other case it leaves the recording alone
and says why.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from telnyx_provider.retry import RetryPolicy
    from telnyx_provider.triggers.recording import RecordingCompletedTrigger

log = logging.getLogger("telnyx_provider.triggers.recording")

#: Task states in which the task is over: a user marked it, or its run was marked. The wait's recording is
#: the task's to stop. (Any other state means the task goes on: it is deferred on another triggerer,
#: resumed by an event, or cleared for a new try that resumes the same recording.)
ENDED_STATES = frozenset({"failed", "success", "skipped", "removed", "upstream_failed"})
#: Statuses of a recording that a stop still changes.
LIVE_STATUSES = frozenset({"in-progress", "paused"})
#: Seconds the look before the stop may take (one attempt): it only spares a stop that changes nothing.
LOOK_BUDGET = 2.0


#: The shielded kill tasks still running (a reference keeps each alive until it is done).
_RUNNING: set[asyncio.Task[None]] = set()


async def run_shielded(trigger: RecordingCompletedTrigger) -> None:
    """Run :func:`stop_killed_recording` so that cancelling the caller does not interrupt it."""
    task = asyncio.ensure_future(stop_killed_recording(trigger))
    _RUNNING.add(task)
    task.add_done_callback(_RUNNING.discard)
    await asyncio.shield(task)


async def task_state(task_instance: Any) -> str | None:
    """The current state of the trigger's task instance (``None`` for a cleared one), from Airflow.

    :param task_instance: the task instance the triggerer attached to the trigger.
    :raises Exception: when the state cannot be read (the task instance is gone, the request failed).
    """
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance
    from asgiref.sync import sync_to_async

    ti = task_instance
    states = await sync_to_async(RuntimeTaskInstance.get_task_states)(
        dag_id=ti.dag_id, map_index=ti.map_index, task_ids=[ti.task_id], run_ids=[ti.run_id]
    )
    found: dict[str, Any] = states[ti.run_id]
    state = found[state_key(ti.task_id, ti.map_index)]
    return None if state is None else str(state)


async def reason_to_leave_running(task_instance: Any) -> str | None:
    """Why a cancelled wait must not stop its recording, or ``None`` when its task has ended.

    :param task_instance: the trigger's task instance (``None`` when no triggerer attached one: the caller
        killed the wait itself).
    """
    if task_instance is None:
        return None
    try:
        state = await task_state(task_instance)
    except Exception as error:  # unsure: a wrongful stop loses audio for good, a missed one does not
        return f"its task's state could not be read ({type(error).__name__}: {error})"
    return reason_for_state(state)


def reason_for_state(state: str | None) -> str | None:
    """Why a killed wait whose task is in ``state`` must leave its recording running (``None``: stop it).

    Shared by the trigger's ``on_kill`` and the operator's (poke mode).

    :param state: the task instance's state as Airflow reports it (``None``: cleared).
    """
    if state in ENDED_STATES:
        return None
    if state == "deferred":
        return "its task is still deferred: the wait moved to another triggerer, which goes on waiting"
    if state is None:
        return "its task was cleared: its next try resumes the same recording"
    return f"its task is {state}: it goes on, and its own code decides what happens to the recording"


def state_key(task_id: str, map_index: int | None) -> str:
    """The key of a task instance in Airflow's ``get_task_states`` answer (``task_id_3`` when mapped)."""
    return task_id if map_index is None or map_index < 0 else f"{task_id}_{map_index}"


async def stop_killed_recording(trigger: RecordingCompletedTrigger) -> None:
    """``on_kill`` of a wait that owns its recording: stop it if its task ended and it is still live.

    Never raises: a failure is logged. The look and the stop have short budgets of their own.
    """
    from telnyx_provider.hooks.recording_async import shared_client
    from telnyx_provider.triggers.recording import KILL_STOP_BUDGET, KILL_STOP_MAX_WAIT

    sid, call_sid = trigger.recording_sid, trigger.call_sid
    assert call_sid is not None  # only waits with a call own their recording
    reason = await reason_to_leave_running(getattr(trigger, "task_instance", None))
    if reason is not None:
        log.warning(
            "The wait for recording %s was cancelled; the recording is left running: %s.", sid, reason
        )
        return
    try:
        async with shared_client(trigger.telnyx_conn_id) as client:
            policy = client.retry_policy.replace(**trigger._retry_changes())
            status = await _status(client, trigger, policy)
            if status is not None and status not in LIVE_STATUSES:
                log.info(
                    "Recording %s is already %s after its wait was killed; not stopped again.", sid, status
                )
                return
            policy = policy.replace(
                budget=min(policy.budget, KILL_STOP_BUDGET), max_wait=min(policy.max_wait, KILL_STOP_MAX_WAIT)
            )
            await client.stop_call_recording(
                call_sid, sid, account_sid=trigger.account_sid, retry_policy=policy
            )
    except Exception as error:  # on_kill must never raise: say what happened instead
        log.error(
            "Could not stop recording %s on call %s after its wait was killed: %s", sid, call_sid, error
        )
    else:
        log.warning("Stopped recording %s on call %s because its wait was killed.", sid, call_sid)


async def _status(client: Any, trigger: RecordingCompletedTrigger, policy: RetryPolicy) -> str | None:
    """The recording's status in one short look, or ``None`` if the look failed (then the stop is sent)."""
    look = policy.replace(max_retries=0, budget=min(policy.budget, LOOK_BUDGET))
    try:
        recording = await client.get_recording(
            trigger.recording_sid, account_sid=trigger.account_sid, retry_policy=look
        )
    except Exception as error:
        log.info(
            "Could not look at recording %s before stopping it (%s); stopping it.",
            trigger.recording_sid,
            error,
        )
        return None
    status = recording.get("status") if isinstance(recording, dict) else None
    return status if isinstance(status, str) else None
