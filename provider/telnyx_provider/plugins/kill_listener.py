"""Stop a deferred wait's recording in the API server when a user marks its task failed or succeeded.

Airflow 3.3 calls a trigger's ``on_kill`` only on a triggerer that runs the trigger. A task marked failed the
moment it shows ``deferred``, before any triggerer picked its trigger up, never gets there: Airflow's
``Trigger.clean_unused`` deletes the trigger first, no ``on_kill`` runs anywhere, and the recording the task
started goes on until the call ends. What Airflow does run in that case is in the API server that handles
the user's ``PATCH .../taskInstances/...``: the listener hooks ``on_task_instance_failed`` and
``on_task_instance_success``, for each task instance the request changed, inside the request (the task
instance still names its trigger then).

This listener (registered by :class:`TelnyxKillsPlugin`) stops the recording there, right away and whoever
holds the trigger, when the task instance is deferred on a ``RecordingCompletedTrigger`` that owns its
recording (the operator's ``wait_for_completion``). The trigger's own ``on_kill``, if a triggerer runs it
later, finds the recording already stopped and does not stop it again. Airflow 3.3.2 fires these hooks for
a task marked through the REST API or the UI and for the deferred tasks of a DAG run marked failed or
succeeded; a cleared task needs no stop (its next try resumes the recording).

A stop that does not get through within the request's few seconds (a Telnyx outage) is sent again from a
thread of the API-server worker (:mod:`telnyx_provider.plugins.stop_retries`, for up to 15 minutes); while
one waits, further marks through the same connection queue their stops there at once instead of holding
their requests (a DAG run marked failed with many deferred waits would otherwise take a stop budget each).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin

from telnyx_provider.errors import TelnyxApiError
from telnyx_provider.plugins.stop_retries import StopRetrier
from telnyx_provider.retry import is_retryable

log = logging.getLogger(__name__)

#: The trigger whose recordings this listener may stop.
TRIGGER_CLASSPATH = "telnyx_provider.triggers.recording.RecordingCompletedTrigger"
#: A stop from the API server must not hold the user's request (and its row lock) for long.
STOP_BUDGET = 4.0
STOP_TIMEOUT = 2.0
#: Stops that did not get through in the request, sent again from a thread of this API-server worker.
RETRIER = StopRetrier()


def owned_wait(task_instance: Any) -> dict[str, Any] | None:
    """The trigger arguments of a deferred wait that owns its recording, or ``None``.

    :param task_instance: what the listener hook got: Airflow's ``TaskInstance`` in the API server (a
        task's runtime instance elsewhere, which names no trigger: ignored).
    """
    if getattr(task_instance, "trigger_id", None) is None:
        return None
    trigger = getattr(task_instance, "trigger", None)
    if trigger is None or getattr(trigger, "classpath", None) != TRIGGER_CLASSPATH:
        return None
    kwargs: dict[str, Any] = trigger.kwargs
    if not (kwargs.get("stop_on_kill") and kwargs.get("call_sid")):
        return None
    return kwargs


def stop_owned_recording(task_instance: Any, new_state: str) -> None:
    """Stop the recording of a deferred wait a user ended; never raises (a failure is logged)."""
    try:
        kwargs = owned_wait(task_instance)
    except Exception as error:  # a listener must never break the user's request
        log.warning("Could not read the trigger of %s: %s", task_instance, error)
        return
    if kwargs is None:
        return
    from telnyx_provider.hooks.recording import RecordingHook
    from telnyx_provider.plugins.stop_retries import PendingStop

    sid, call_sid = kwargs["recording_sid"], kwargs["call_sid"]
    conn_id = kwargs.get("telnyx_conn_id") or "telnyx_default"
    pending = PendingStop(conn_id, call_sid, sid, kwargs.get("account_sid"), f"marked {new_state}")
    if RETRIER.failing(conn_id):  # Telnyx is not answering stops now: do not hold the request for nothing
        log.error(
            "Not stopping recording %s now (its deferred task was marked %s): Telnyx did not answer the "
            "last stops through %s; trying in the background.",
            sid,
            new_state,
            conn_id,
        )
        RETRIER.add(pending)
        return
    hook = RecordingHook(
        telnyx_conn_id=conn_id,
        max_retries=2,
        retry_max_wait=1.0,
        retry_budget=STOP_BUDGET,
        request_timeout=STOP_TIMEOUT,
    )
    try:
        hook.stop_call_recording(call_sid, sid, account_sid=pending.account_sid)
    except Exception as error:
        if isinstance(error, TelnyxApiError) and error.status == 422:
            log.info("Recording %s had already ended when its deferred task was marked %s.", sid, new_state)
            return
        retried = not isinstance(error, TelnyxApiError) or is_retryable(error)
        log.error(
            "Could not stop recording %s after its deferred task was marked %s: %s%s",
            sid,
            new_state,
            error,
            "; trying again in the background" if retried else "",
        )
        if retried:
            RETRIER.add(pending)
    else:
        log.warning(
            "Stopped recording %s on call %s: its deferred task was marked %s.", sid, call_sid, new_state
        )


@hookimpl
def on_task_instance_failed(previous_state: Any, task_instance: Any, error: Any) -> None:
    """A task instance was set to ``failed`` (in the API server: by a user)."""
    stop_owned_recording(task_instance, "failed")


@hookimpl
def on_task_instance_success(previous_state: Any, task_instance: Any) -> None:
    """A task instance was set to ``success`` (in the API server: by a user)."""
    stop_owned_recording(task_instance, "success")


class TelnyxKillsPlugin(AirflowPlugin):
    """Registers the listener that stops a deferred wait's recording when a user ends its task."""

    name = "telnyx_kills"
    listeners = [sys.modules[__name__]]  # noqa: RUF012 - the attribute Airflow reads
