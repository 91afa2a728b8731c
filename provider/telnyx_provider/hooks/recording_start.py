"""Starting a recording exactly once over an unreliable network: the start request and its retries.

A start is not idempotent: sent twice, it records the call twice. Sent once and unanswered, it may or may
not have created a recording. :class:`RecordingStart` never guesses; it adopts a recording only on the
evidence :mod:`telnyx_provider.adoption` names:

- a definite no (a 4xx, 429 included; a connection that never opened) started nothing: sent again where
  the retry policy allows;
- **exact mode** (:mod:`telnyx_provider.exact_start`), after a failure that may hide a started recording:
  the receiver is asked what the callbacks carrying this start's tokens said; a sighting, checked against
  the service, is adopted. None within ``adoption_wait`` seconds: the start is sent again with a new token,
  and a late recording of an earlier attempt is recognised by its token and stopped (superseded);
- **default mode**: the call's recordings are judged against the snapshot
  (:func:`telnyx_provider.adoption.judge`); a ``both``-track start adopts the sole new match; anything else
  is an :class:`~telnyx_provider.errors.UncertainStartError` naming what was seen, never a second POST.

A timeout (ours or a gateway's 504) may still be carried out later: in both modes the start is then
watched until the retry budget is spent, never sent again.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Protocol

from tenacity import Retrying

from telnyx_provider import api
from telnyx_provider._compat import mask_secret
from telnyx_provider.adoption import (
    Evidence,
    Outcome,
    describe_recordings,
    is_one_track,
    judge,
    may_have_started,
    may_still_start,
)
from telnyx_provider.errors import AmbiguousStartError, TelnyxApiError, UncertainStartError
from telnyx_provider.exact_start import new_token, token_params
from telnyx_provider.hooks.start_sightings import TokenSightings, stop_superseded

if TYPE_CHECKING:
    from collections.abc import Collection, Iterator, Sequence

    from telnyx_provider.exact_start import ExactStart
    from telnyx_provider.hooks.recording import RecordingHook
    from telnyx_provider.params import StartRecordingParams
    from telnyx_provider.retry import RetryPolicy

log = logging.getLogger(__name__)

#: Seconds a start whose reply was lost keeps looking for its recording (default of ``adoption_wait``).
DEFAULT_ADOPTION_WAIT = 5.0
#: The most pages of the call's recordings a start reads, for its snapshot and for each look after a lost
#: reply: 100 pages of 100, ten thousand recordings on one call. A list that runs past them (or never ends)
#: fails the start with an error saying so; before the snapshot, nothing was sent.
SNAPSHOT_MAX_PAGES = 100
#: Seconds the look at the call that an error names may take (its retries included).
LOOK_FOR_MESSAGE = 5.0
EXACT_HINT = (
    "To make starts exact, send the status callback to this provider's receiver "
    "(recording_status_callback='https://<airflow api server>/telnyx/recording-status'), or record the call "
    "with one both-track (dual) recording per call."
)


class StartJournal(Protocol):
    """Told what a start is about to do and how each attempt ended, before anything else happens.

    The start operator keeps it in Airflow's task state store, so a retry knows what an earlier try did.
    """

    def sending(self, token: str | None) -> None:  # pragma: no cover - a protocol
        """The start is about to be sent (with this token in exact mode)."""

    def refused(self, error: TelnyxApiError) -> None:  # pragma: no cover - a protocol
        """The start got a definite no: nothing started."""

    def reply_lost(self, error: TelnyxApiError) -> None:  # pragma: no cover - a protocol
        """The start may have gone through: its reply was lost."""


class _Decided(Exception):
    """Carries an error out of the retry loop: it ends the start, whatever its status."""

    def __init__(self, error: TelnyxApiError) -> None:
        super().__init__(str(error))
        self.error = error


class RecordingStart:
    """One start request, sent so that the call ends up with exactly one recording from it.

    :param hook: the hook whose transport and retry policy are used.
    :param call_sid: the call to record.
    :param account_sid: the account (already resolved).
    :param params: the validated start parameters.
    :param snapshot: the SIDs of the call's recordings before the start was first sent (default mode).
    :param adoption_wait: seconds to look for a lost start's recording before giving up on it.
    :param exact: the receiver of an exact start; ``None`` in default mode.
    :param journal: told of each attempt before it is sent and of how it ended.
    :param earlier_tokens: tokens of attempts an earlier try of the same task sent (exact mode).
    """

    def __init__(
        self,
        hook: RecordingHook,
        call_sid: str,
        account_sid: str,
        params: StartRecordingParams,
        snapshot: Collection[str] | None,
        *,
        adoption_wait: float = DEFAULT_ADOPTION_WAIT,
        exact: ExactStart | None = None,
        journal: StartJournal | None = None,
        earlier_tokens: Sequence[str] = (),
    ) -> None:
        self.hook = hook
        self.call_sid = call_sid
        self.account_sid = account_sid
        self.params = params
        self.snapshot = frozenset(snapshot or ())
        self.adoption_wait = adoption_wait
        self.exact = exact
        self.journal = journal
        self.tokens = list(earlier_tokens)
        for token in self.tokens:
            mask_secret(token)  # a capability: Airflow's masker redacts it from anything the task logs

    @property
    def policy(self) -> RetryPolicy:
        """The hook's retry policy."""
        return self.hook.retry_policy

    def run(self) -> dict[str, Any]:
        """Send the start (again only where that is safe) and return this start's recording.

        :raises UncertainStartError: the start may have gone through and no recording is proven its own
            (:class:`~telnyx_provider.errors.AmbiguousStartError` when candidates were seen).
        :raises TelnyxApiError: the start was refused (nothing started).
        """
        deadline = time.monotonic() + self.policy.budget
        failure: TelnyxApiError | None = None
        token: str | None = None
        description = f"POST {api.start_call_recording(self.account_sid, self.call_sid, self.params).path}"
        try:
            for attempt in Retrying(**self.policy.tenacity_kwargs(description)):
                with attempt:
                    if failure is not None and may_have_started(failure):
                        adopted = self._after_lost_reply(failure, deadline)
                        if adopted is not None:
                            return self.settle(adopted)
                    if self.exact is not None and (failure is None or may_have_started(failure)):
                        token = new_token()  # a refused attempt started nothing: its token is reused
                    try:
                        recording = self._send(token)
                    except TelnyxApiError as error:
                        failure = error
                        raise
                    self._log_adoption(recording, Evidence.REPLY, level=logging.INFO)
                    return self.settle(recording)
        except _Decided as decided:
            raise decided.error from None
        except TelnyxApiError as error:
            if not may_have_started(error):
                raise
            raise self._uncertain(
                error, "the retry policy ended before its recording was looked for"
            ) from None
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    def _send(self, token: str | None) -> dict[str, Any]:
        params = self.params
        if token is not None:
            if token not in self.tokens:
                mask_secret(token)
                self.tokens.append(token)
            params = token_params(params, token)
        if self.journal is not None:
            self.journal.sending(token)
        request = api.start_call_recording(self.account_sid, self.call_sid, params)
        try:
            return self.hook._send(request, api.parse_recording)
        except TelnyxApiError as error:
            if self.journal is not None:
                (self.journal.reply_lost if may_have_started(error) else self.journal.refused)(error)
            raise

    # -- after a failure that may hide a started recording -------------------------------------------

    def _after_lost_reply(self, failure: TelnyxApiError, deadline: float) -> dict[str, Any] | None:
        """This start's recording, or ``None`` when sending it again is safe (exact mode only)."""
        later = may_still_start(failure)
        until = deadline if later else min(deadline, time.monotonic() + self.adoption_wait)
        if self.exact is None:
            return self._watch_call(failure, until)
        return self._watch_tokens(failure, until, later)

    def _watch_call(self, failure: TelnyxApiError, until: float) -> dict[str, Any]:
        seen: list[dict[str, Any]] | None = None
        look_error: TelnyxApiError | None = None
        for _ in self._pauses(until):
            try:
                seen = self._recordings(until)
            except TelnyxApiError as error:
                look_error = error
                continue
            verdict = judge(seen, self.snapshot, self.params)
            if verdict.outcome is Outcome.ADOPT:
                self._log_adoption(verdict.recording, Evidence.SOLE_MATCH)
                return verdict.recording
            if verdict.outcome is Outcome.AMBIGUOUS:
                raise _Decided(self._ambiguous(failure, verdict.recordings))
        if seen is None:
            reason = f"the call's recordings could not be read ({look_error})"
        else:
            reason = (
                f"nothing new matching it showed up on the call in {self.adoption_wait:g} s (recordings "
                f"there: {describe_recordings(seen)})"
            )
        raise _Decided(self._uncertain(failure, reason, look=False))

    def await_sightings(self, until: float) -> tuple[list[dict[str, Any]], bool]:
        """Ask the receiver until a token's recording is found or ``until``: (found, whether it answered)."""
        asked = False
        for _ in self._pauses(until):
            found, answered = self.sighted()
            asked = asked or answered
            if found:
                return found, True
        return [], asked

    def _watch_tokens(self, failure: TelnyxApiError, until: float, later: bool) -> dict[str, Any] | None:
        found, asked = self.await_sightings(until)
        if found:
            ours = found[-1]  # the newest attempt's: earlier ones are superseded
            self._log_adoption(ours, Evidence.TOKEN)
            return ours
        if not asked:
            raise _Decided(self._uncertain(failure, f"the receiver at {self.exact_receiver} did not answer"))
        if later:
            raise _Decided(self._uncertain(failure, "no callback carried its token within the retry budget"))
        log.warning(
            "No callback carried the token of the failed start on call %s within %.1f s; sending it again "
            "with a new token (a late recording of the earlier attempt is recognised by its token and "
            "stopped).",
            self.call_sid,
            self.adoption_wait,
        )
        return None

    @property
    def exact_receiver(self) -> str:
        """The receiver's base URL (exact mode)."""
        return self.exact.receiver if self.exact is not None else "-"

    def _pauses(self, until: float) -> Iterator[None]:
        """Yield once per look, sleeping between looks (backoff) until ``until``; always at least once."""
        pause = self.policy.initial_wait
        while True:
            yield
            remaining = until - time.monotonic()
            if remaining <= 0:
                return
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, self.policy.max_wait)

    def _recordings(self, until: float) -> list[dict[str, Any]]:
        # The look-ups share the start's window rather than each getting a whole budget.
        policy = self.policy.replace(budget=max(until - time.monotonic(), 0.001))
        return self.hook.list_call_recordings(
            self.call_sid, account_sid=self.account_sid, retry_policy=policy, max_pages=SNAPSHOT_MAX_PAGES
        )

    # -- exact mode: what the receiver saw -----------------------------------------------------------

    def sighted(self) -> tuple[list[dict[str, Any]], bool]:
        """The verified recordings this start's tokens name (oldest first); whether any answer came."""
        if self.exact is None:
            return [], False
        return TokenSightings(self.hook, self.call_sid, self.account_sid, self.params, self.exact).found(
            self.tokens
        )

    def settle(self, recording: dict[str, Any]) -> dict[str, Any]:
        """After a re-send (exact mode): stop what the start's other attempts created, now and later.

        An earlier attempt whose callback comes late is proven this start's by its token, and superseded. The
        start first tells the receiver which recording it kept and every token it sent (the receiver then
        stops any other recording a later callback with one of them names, also once this task has ended),
        then stops those already sighted. A stop that fails is sent again on the next look, within
        ``adoption_wait``; one still failing is logged as an error naming the recording left running. If the
        receiver cannot take the settlement, the start watches for late ones for ``adoption_wait`` seconds
        itself and says so.
        """
        if self.exact is None or len(self.tokens) < 2:
            return recording
        kept = str(recording.get("sid"))
        settled = TokenSightings(self.hook, self.call_sid, self.account_sid, self.params, self.exact).settle(
            recording, self.tokens
        )
        if not settled:
            log.warning(
                "A recording of an earlier attempt of this start whose callback comes more than %.1f s from "
                "now will not be stopped (the receiver could not take the settlement).",
                self.adoption_wait,
            )
        stopped: set[str] = set()
        failing: dict[str, dict[str, Any]] = {}
        for _ in self._pauses(time.monotonic() + self.adoption_wait):
            found, _ = self.sighted()
            for other in found:
                sid = str(other.get("sid"))
                if sid == kept or sid in stopped:
                    continue
                if stop_superseded(self.hook, other, recording, account_sid=self.account_sid):
                    stopped.add(sid)
                    failing.pop(sid, None)
                else:
                    failing[sid] = other
            if not failing and (settled or len(stopped) >= len(self.tokens) - 1):
                break  # settled: the receiver stops whatever comes later
        for sid in failing:
            log.error(
                "Recording %s on call %s, created by an earlier attempt of this start (its token proves it) "
                "and superseded by recording %s, could not be stopped: it is still running. Stop it by hand.",
                sid,
                self.call_sid,
                kept,
            )
        return recording

    # -- messages ------------------------------------------------------------------------------------

    def _log_adoption(
        self, recording: dict[str, Any], evidence: Evidence, level: int = logging.WARNING
    ) -> None:
        if evidence is Evidence.REPLY:
            log.log(
                level,
                "Started recording %s on call %s (evidence: %s).",
                recording.get("sid"),
                self.call_sid,
                evidence.value,
            )
            return
        log.log(
            level,
            "Adopting recording %s on call %s (status %s): the start's reply was lost; evidence: %s. No "
            "second recording is started.",
            recording.get("sid"),
            self.call_sid,
            recording.get("status"),
            evidence.value,
        )

    def seen_on_call(self) -> str:
        """What is on the call now, for the message of a start that may have gone through (one short look)."""
        try:
            seen = self._recordings(time.monotonic() + LOOK_FOR_MESSAGE)
        except TelnyxApiError as error:
            return f"the call's recordings could not be read ({error.status or error.failure})"
        return f"recordings on the call now: {describe_recordings(seen)}"

    def _uncertain(self, failure: TelnyxApiError, reason: str, *, look: bool = True) -> UncertainStartError:
        if look:  # the error names what was seen on the call, so the user can check it
            reason = f"{reason}; {self.seen_on_call()}"
        return UncertainStartError(
            status=failure.status,
            method=failure.method,
            path=failure.path,
            code=failure.code,
            title=failure.title,
            detail=failure.detail,
            failure=failure.failure,
            hint=(
                f"The start may have gone through: {reason}. It was not sent again, since that could record "
                f"call {self.call_sid} twice. Check the call's recordings before starting another."
                + ("" if self.exact is not None else " " + EXACT_HINT)
            ),
        )

    def _ambiguous(
        self, failure: TelnyxApiError, candidates: Sequence[dict[str, Any]]
    ) -> AmbiguousStartError:
        why = (
            "this start records one track, and no field of Telnyx's recording list tells an inbound "
            "recording from an outbound one"
            if is_one_track(self.params)
            else "several match it: another start with the same channels ran on this call"
        )
        return AmbiguousStartError(
            status=failure.status,
            method=failure.method,
            path=failure.path,
            detail=f"{failure.detail or 'the reply was lost'}; new recordings on call {self.call_sid} that "
            f"could be this start's: {describe_recordings(candidates)}",
            failure=failure.failure,
            hint=(
                f"The start may have gone through (its reply was lost), and which recording is its own "
                f"cannot be told: {why}. None was adopted and nothing was sent again: check the call's "
                f"recordings and stop the ones you do not want. {EXACT_HINT}"
            ),
        )
