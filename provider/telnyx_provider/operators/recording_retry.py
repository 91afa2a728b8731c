"""How a retried start finds the recording an earlier try of the same task started.

With Airflow's durable task state (3.3+), the earlier try left a :class:`StartRecord`:
:func:`recording_to_resume` reads the recording back and decides. Without it (3.1/3.2),
:func:`active_recording_since` applies a weaker rule. Both only read; the operator acts on the answer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pendulum

from telnyx_provider.adoption import Outcome, is_active, judge, matches_start
from telnyx_provider.errors import AmbiguousStartError, TelnyxApiError
from telnyx_provider.models import Verdict, assess_recording

if TYPE_CHECKING:
    from datetime import datetime

    from telnyx_provider.hooks.recording import RecordingHook
    from telnyx_provider.operators.start_memory import StartRecord
    from telnyx_provider.params import StartRecordingParams

log = logging.getLogger(__name__)

#: Allowed gap between our clock and Telnyx's in the fallback rule (3.1/3.2 only; no store there).
CLOCK_TOLERANCE_SECONDS = 5.0


@dataclass(frozen=True)
class Resumed:
    """A recording an earlier try started, and whether it is already final."""

    recording: dict[str, Any]
    final: bool


def recording_to_resume(
    hook: RecordingHook,
    record: StartRecord,
    params: StartRecordingParams,
    *,
    account_sid: str | None,
) -> Resumed | None:
    """The earlier try's recording to carry on with, or ``None`` when a new one must be started.

    - still capturing (or ended and being processed) -> resume it;
    - completed -> return it, unless this task stopped it (its timeout or a kill) or the try that owned it
      was killed while deferred (the trigger stops it then);
    - stopped by this task, failed, absent, deleted or gone -> ``None``: start a new one.

    A record without a recording SID comes from a try that died between sending the start and storing
    the SID: the call's recordings are judged against the stored snapshot, so the start it sent is found.
    """
    if record.recording_sid is None:
        recording = _lost_in_a_crash(hook, record, params, account_sid=account_sid)
        if recording is None:
            return None
    else:
        try:
            recording = hook.get_recording(record.recording_sid, account_sid=account_sid)
        except TelnyxApiError as error:
            if error.status != 404:
                raise
            log.warning(
                "Recording %s of an earlier try is gone (HTTP 404); starting a new one.", record.recording_sid
            )
            return None
    sid = recording.get("sid")
    if record.stopped_by is not None:
        log.warning(
            "Recording %s was stopped by this task's earlier try (%s); starting a new recording.",
            sid,
            record.stopped_by,
        )
        return None
    assessment = assess_recording(recording)
    if assessment.verdict is Verdict.FAIL:
        log.warning("%s Starting a new recording.", assessment.reason)
        return None
    if is_active(recording):
        log.info(
            "Resuming recording %s, started by an earlier try (status %s).", sid, recording.get("status")
        )
        return Resumed(recording, final=False)
    if record.deferred:
        # The owning try never came back from the triggerer: it was marked failed or cleared, and the
        # trigger's on_kill stopped the recording. Whatever ended it, the call may still be going on.
        log.warning(
            "Recording %s ended while an earlier try was deferred and was interrupted; starting a new "
            "recording if the call is still live.",
            sid,
        )
        return None
    final = assessment.verdict is Verdict.DONE
    log.info("Recording %s, started by an earlier try, is %s; returning it.", sid, recording.get("status"))
    return Resumed(recording, final=final)


def _lost_in_a_crash(
    hook: RecordingHook,
    record: StartRecord,
    params: StartRecordingParams,
    *,
    account_sid: str | None,
) -> dict[str, Any] | None:
    recordings = hook.list_call_recordings(record.call_sid, account_sid=account_sid)
    verdict = judge(recordings, record.snapshot, params)
    if verdict.outcome is Outcome.ADOPT:
        log.warning(
            "An earlier try sent the start but died before storing its recording: recording %s is new since "
            "then and matches it, so it is this task's (no second recording is started).",
            verdict.recording.get("sid"),
        )
        return verdict.recording
    if verdict.outcome is Outcome.AMBIGUOUS:
        raise AmbiguousStartError(
            status=None,
            method="POST",
            path=f"call {record.call_sid}",
            detail="an earlier try died after sending the start; new matching recordings: "
            + ", ".join(verdict.sids()),
            hint="Several starts with the same parameters ran on this call: none was picked.",
        )
    return None


def active_recording_since(
    hook: RecordingHook,
    call_sid: str,
    params: StartRecordingParams,
    since: datetime,
    *,
    account_sid: str | None,
) -> dict[str, Any] | None:
    """On Airflow 3.1/3.2 (no durable state): an active recording matching ``params`` started since ``since``.

    Weaker than the stored rule: ``since`` and Telnyx's ``start_time`` come from two clocks (a tolerance of
    :data:`CLOCK_TOLERANCE_SECONDS` is allowed), and a recording that already ended is never adopted.
    """
    earliest = pendulum.instance(since).subtract(seconds=CLOCK_TOLERANCE_SECONDS)
    found = []
    for recording in hook.list_call_recordings(call_sid, account_sid=account_sid):
        if not (is_active(recording) and matches_start(recording, params)):
            continue
        try:
            started = pendulum.parse(str(recording.get("start_time")))
        except (ValueError, pendulum.parsing.exceptions.ParserError):
            continue
        if isinstance(started, pendulum.DateTime) and started >= earliest:
            found.append(recording)
    if len(found) > 1:
        raise AmbiguousStartError(
            status=None,
            method="POST",
            path=f"call {call_sid}",
            detail="several active recordings match this task's start: "
            + ", ".join(str(recording.get("sid")) for recording in found),
            hint="On this Airflow version a retry cannot tell which one an earlier try started.",
        )
    if found:
        log.warning(
            "Adopting recording %s on call %s: it is active, matches this task's start and started during "
            "this DAG run (an earlier try's, by the rule of Airflow versions without a task state store).",
            found[0].get("sid"),
            call_sid,
        )
        return found[0]
    return None
