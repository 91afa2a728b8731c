"""How a retried start carries on from what an earlier try of the same task stored.

The stored record (:mod:`telnyx_provider.operators.start_memory`) says what the earlier try knew; the
service says what is true now. A retry reads the recording's actual status before it acts on any note:

- a known recording that **completed** is returned, whatever the earlier try was doing (Airflow's
  apache/airflow#71172 race can fail a try whose trigger had already fired success);
- one still recording or being processed is **resumed** (waited for);
- one this task **stopped, confirmed by the service**, or that failed, ended ``absent`` or is gone:
  a new recording is started; a stop that was sent but never confirmed is sent again first;
- no SID: after ``sending`` or ``reply_lost`` a recording may exist, and only the ownership rule decides:
  the start's tokens (exact mode) or the visible-fields rule against the stored snapshot (default mode).
  After ``prepared`` or ``refused`` the last POST started nothing: default mode starts afresh (new
  snapshot); exact mode still asks for every stored token once (an earlier attempt of the same try may have
  lost its reply) and starts anew carrying them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from telnyx_provider.adoption import Evidence, Outcome, describe_recordings, is_active, judge
from telnyx_provider.errors import AmbiguousStartError, TelnyxApiError, UncertainStartError
from telnyx_provider.exact_start import exact_start_for
from telnyx_provider.hooks.recording_start import EXACT_HINT, RecordingStart
from telnyx_provider.models import Verdict, assess_recording

if TYPE_CHECKING:
    from telnyx_provider.hooks.recording import RecordingHook
    from telnyx_provider.operators.start_memory import StartMemory, StartRecord
    from telnyx_provider.params import StartRecordingParams

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resumed:
    """A recording an earlier try started, and whether it is already final."""

    recording: dict[str, Any]
    final: bool


@dataclass(frozen=True)
class Restart:
    """Start a new recording.

    :param snapshot: the snapshot to keep (after a lost reply that showed nothing: a late recording of it
        then still counts as new), or ``None`` for a fresh one.
    :param tokens: the earlier attempts' tokens (exact mode), so a late recording of theirs is stopped.
    """

    snapshot: list[str] | None = None
    tokens: list[str] = field(default_factory=list)


def carry_on(
    hook: RecordingHook,
    memory: StartMemory,
    record: StartRecord,
    params: StartRecordingParams,
    *,
    account_sid: str | None,
    exact_start: bool | None,
) -> Resumed | Restart:
    """What a retry does with an earlier try's ``record`` (see the module docstring).

    :raises UncertainStartError: an earlier POST may have started a recording that cannot be proven this
        task's.
    :raises TelnyxApiError: an unconfirmed stop of the earlier try's recording cannot be sent now.
    """
    if record.recording_sid is None:
        return _without_sid(hook, record, params, account_sid=account_sid, exact_start=exact_start)
    try:
        recording = hook.get_recording(record.recording_sid, account_sid=account_sid)
    except TelnyxApiError as error:
        if error.status != 404:
            raise
        log.warning(
            "Recording %s of an earlier try is gone (HTTP 404); starting a new one.", record.recording_sid
        )
        return Restart()
    sid = str(recording.get("sid"))
    if record.stopped_by is None and record.stop_requested is not None:
        record = _finish_stop(hook, memory, record, recording, account_sid=account_sid)
    if record.stopped_by is not None:
        log.warning(
            "Recording %s was stopped by this task's earlier try (%s; confirmed by the service); starting a "
            "new recording.",
            sid,
            record.stopped_by,
        )
        return Restart()
    assessment = assess_recording(recording)
    if assessment.verdict is Verdict.FAIL:
        log.warning("%s Starting a new recording.", assessment.reason)
        return Restart()
    if assessment.verdict is Verdict.DONE:
        log.info(
            "Recording %s, started by an earlier try, is %s; returning it.", sid, recording.get("status")
        )
        return Resumed(recording, final=True)
    log.info("Resuming recording %s, started by an earlier try (status %s).", sid, recording.get("status"))
    return Resumed(recording, final=False)


def _finish_stop(
    hook: RecordingHook,
    memory: StartMemory,
    record: StartRecord,
    recording: dict[str, Any],
    *,
    account_sid: str | None,
) -> StartRecord:
    """Send again a stop the earlier try could not confirm; the record once the service confirmed it."""
    sid = str(recording.get("sid"))
    if not is_active(recording):
        # Whether the stop or the call's end ended it cannot be told; the try that wanted it stopped
        # gave up on it, so it stays given up.
        log.info(
            "The earlier try's stop of recording %s was not confirmed, but the service shows it ended (%s).",
            sid,
            recording.get("status"),
        )
        return memory.update(record, stop_requested=None, stopped_by=record.stop_requested)
    log.warning("The earlier try's stop of recording %s was not confirmed; sending it again first.", sid)
    try:
        hook.stop_call_recording(record.call_sid, sid, account_sid=account_sid)
    except TelnyxApiError as error:
        if error.status == 422:  # it ended meanwhile: nothing to stop
            return memory.update(record, stop_requested=None)
        raise TelnyxApiError(
            status=error.status,
            method=error.method,
            path=error.path,
            code=error.code,
            detail=error.detail,
            failure=error.failure,
            hint=f"Recording {sid}, which this task asked to stop, is still {recording.get('status')} and "
            "the stop could not be sent again: no new recording is started while it runs.",
        ) from None
    return memory.update(record, stop_requested=None, stopped_by=record.stop_requested)


def _without_sid(
    hook: RecordingHook,
    record: StartRecord,
    params: StartRecordingParams,
    *,
    account_sid: str | None,
    exact_start: bool | None,
) -> Resumed | Restart:
    nothing_sent_last = record.state in ("prepared", "refused")
    if nothing_sent_last and not record.tokens:
        log.info("The earlier try's start %s; starting afresh.", _NOTHING_STARTED[record.state])
        return Restart()
    account = hook.config.resolve_account_sid(account_sid)
    if record.tokens:
        # Every token is watched, whatever the last state: an attempt refused (or never sent) last may come
        # after one whose reply was lost, and whose recording may be this task's.
        exact = exact_start_for(
            params, True if exact_start is None else exact_start, hook.config.receiver_url
        )
        start = RecordingStart(
            hook, record.call_sid, account, params, None, exact=exact, earlier_tokens=record.tokens
        )
        # After a refusal the earlier try had already looked for adoption_wait: one look is enough.
        found, answered = start.await_sightings(
            time.monotonic() + (0.0 if nothing_sent_last else hook.adoption_wait)
        )
        if not answered and nothing_sent_last:
            log.warning(
                "The receiver at %s did not answer; the earlier try's last start %s, and it had found no "
                "recording of its earlier attempts: starting a new one, still watching their tokens.",
                start.exact_receiver,
                _NOTHING_STARTED[record.state],
            )
            return Restart(tokens=record.tokens)
        if not answered:
            raise UncertainStartError(
                status=None,
                method="POST",
                path=f"call {record.call_sid}",
                detail="an earlier try sent the start and its outcome is unknown",
                hint=f"The receiver at {start.exact_receiver} did not answer, so whether that start "
                f"created a recording cannot be told: not starting another; {start.seen_on_call()}.",
            )
        if found:
            ours = found[-1]
            _log_adoption(ours, record, Evidence.TOKEN)
            return Resumed(start.settle(ours), final=False)
        log.warning(
            "No callback carried the tokens of the earlier try's start on call %s within %.1f s: it started "
            "nothing; starting a new recording (a late one of the earlier try is recognised by its token).",
            record.call_sid,
            hook.adoption_wait,
        )
        return Restart(tokens=record.tokens)
    recordings = hook.list_call_recordings(record.call_sid, account_sid=account)
    verdict = judge(recordings, record.snapshot, params)
    if verdict.outcome is Outcome.ADOPT:
        _log_adoption(verdict.recording, record, Evidence.SOLE_MATCH)
        return Resumed(verdict.recording, final=False)
    if verdict.outcome is Outcome.AMBIGUOUS:
        raise AmbiguousStartError(
            status=None,
            method="POST",
            path=f"call {record.call_sid}",
            detail="an earlier try sent the start, which may have gone through (its reply was lost); new "
            f"recordings that could be its own: {describe_recordings(verdict.recordings)}",
            hint="Which one (if any) is this task's cannot be told from the fields Telnyx's list has: none "
            f"was adopted and no new recording was started. {EXACT_HINT}",
        )
    log.warning(
        "The earlier try's start on call %s may have been sent, and nothing new matching it is on the call "
        "now (recordings there: %s): starting a new recording, keeping the earlier snapshot.",
        record.call_sid,
        describe_recordings(recordings),
    )
    return Restart(snapshot=record.snapshot)


_NOTHING_STARTED = {
    "prepared": "was never sent",
    "refused": "was refused (nothing started)",
}


def _log_adoption(recording: dict[str, Any], record: StartRecord, evidence: Evidence) -> None:
    log.warning(
        "An earlier try sent the start and lost its outcome (%s): recording %s is this task's; evidence: %s. "
        "No second recording is started.",
        record.state,
        recording.get("sid"),
        evidence.value,
    )
