"""How the start operator stops its own recording (its wait timed out, the task was killed), journalled.

The stop is written as ``stop_requested`` before it is sent and as ``stopped_by`` only once the service
confirmed it (:mod:`~telnyx_provider.operators.start_memory`): a retry sends an unconfirmed stop again
before it starts anything. The store may be gone with a dying worker: the stop matters more, so a failed
write is logged, never raised.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from telnyx_provider.errors import TelnyxApiError

if TYPE_CHECKING:
    from telnyx_provider.hooks.recording import RecordingHook
    from telnyx_provider.operators.start_memory import StartMemory, StartRecord


def stop_journalled(
    hook: RecordingHook,
    memory: StartMemory | None,
    record: StartRecord | None,
    *,
    call_sid: str,
    recording_sid: str,
    account_sid: str | None,
    reason: str,
    why: str,
    log: Any,
) -> StartRecord | None:
    """Stop ``recording_sid`` and keep the task state store's record of it; returns the record as stored.

    :param reason: ``"timeout"`` or ``"kill"`` (stored as ``stop_requested``, then ``stopped_by``).
    :param why: the reason in words, for the log.
    :param log: the task's logger.
    """
    stored = memory is not None and record is not None
    if memory is not None and record is not None:
        try:  # first: a retry then knows a stop was sent, and sends it again if it was not confirmed
            record = memory.update(record, stop_requested=reason)
        except Exception as error:
            log.warning("Could not record the stop of recording %s: %s", recording_sid, error)
            stored = False
    try:
        hook.stop_call_recording(call_sid, recording_sid, account_sid=account_sid)
    except TelnyxApiError as error:
        if error.status != 422:
            log.error(
                "Could not stop recording %s after %s: %s (not confirmed: a retry sends the stop again)",
                recording_sid,
                why,
                error,
            )
            return record
        # 422: it had ended already; nothing was stopped, and a retry reads how it ended.
        log.warning("Recording %s had already ended when %s.", recording_sid, why)
        confirmed: dict[str, str | None] = {"stop_requested": None}
    else:
        log.warning("Stopped recording %s on call %s because %s.", recording_sid, call_sid, why)
        confirmed = {"stop_requested": None, "stopped_by": reason}
    if stored and memory is not None and record is not None:
        try:
            record = memory.update(record, **confirmed)
        except Exception as error:
            log.warning("Could not record the confirmed stop of recording %s: %s", recording_sid, error)
    return record
