"""Starting a recording exactly once over an unreliable network: the start request and its retries.

A start is not idempotent: sent twice, it records the call twice. Sent once and unanswered, it may or may
not have created a recording. :class:`RecordingStart` therefore never guesses. Before the first POST it has
the call's recording SIDs (the *snapshot*); after a failure that may hide a started recording it reads the
call's recordings and applies :func:`telnyx_provider.adoption.judge`: exactly one new recording matching
the request is adopted, several are an error naming them, none means looking again for a while (the list
may lag) and, where sending again is safe, sending the start again.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from tenacity import Retrying

from telnyx_provider import api
from telnyx_provider.adoption import Outcome, Verdict, judge
from telnyx_provider.errors import AmbiguousStartError, TelnyxApiError

if TYPE_CHECKING:
    from collections.abc import Collection

    from telnyx_provider.hooks.recording import RecordingHook
    from telnyx_provider.params import StartRecordingParams
    from telnyx_provider.retry import RetryPolicy

log = logging.getLogger(__name__)

#: Seconds a start whose reply was lost keeps looking for its recording before it is sent again.
DEFAULT_ADOPTION_WAIT = 5.0
#: The most pages of the call's recordings a start reads, for its snapshot and for each look after a lost
#: reply: 100 pages of 100, ten thousand recordings on one call. A list that runs past them (or never ends)
#: fails the start with an error saying so; before the snapshot, nothing was sent.
SNAPSHOT_MAX_PAGES = 100


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
    :param snapshot: the SIDs of the call's recordings before the start was first sent.
    :param adoption_wait: seconds to keep looking for a lost start's recording before sending it again.
    """

    def __init__(
        self,
        hook: RecordingHook,
        call_sid: str,
        account_sid: str,
        params: StartRecordingParams,
        snapshot: Collection[str],
        *,
        adoption_wait: float = DEFAULT_ADOPTION_WAIT,
    ) -> None:
        self.hook = hook
        self.call_sid = call_sid
        self.account_sid = account_sid
        self.params = params
        self.snapshot = frozenset(snapshot)
        self.adoption_wait = adoption_wait
        self.request = api.start_call_recording(account_sid, call_sid, params)

    @property
    def policy(self) -> RetryPolicy:
        """The hook's retry policy."""
        return self.hook.retry_policy

    def run(self) -> dict[str, Any]:
        """Send the start (again only where that is safe) and return this start's recording.

        :raises TelnyxApiError: the start failed for good; a start that may have been carried out is
            never reported as failed without saying so.
        :raises AmbiguousStartError: several new recordings match and none can be told to be ours.
        """
        deadline = time.monotonic() + self.policy.budget
        failure: TelnyxApiError | None = None
        retrying = Retrying(**self.policy.tenacity_kwargs(f"{self.request.method} {self.request.path}"))
        try:
            for attempt in retrying:
                with attempt:
                    if failure is not None:
                        adopted = self._after_failure(failure, deadline)
                        if adopted is not None:
                            return adopted
                    try:
                        return self.hook._send(self.request, api.parse_recording)
                    except TelnyxApiError as error:
                        failure = error
                        raise
        except _Decided as decided:
            final = decided.error
        else:  # pragma: no cover
            raise AssertionError("unreachable: tenacity re-raises the last error")
        raise final

    def _after_failure(self, failure: TelnyxApiError, deadline: float) -> dict[str, Any] | None:
        """This start's recording after ``failure``, or ``None`` when sending the start again is safe.

        A 429 or a connection that never opened started nothing. A lost reply (reset) or a 5xx may have:
        the call is looked at for up to ``adoption_wait`` seconds. A timeout (ours, or a gateway's 504) may
        still be carried out later: the start is never sent again, the call is watched until the retry
        budget is spent.
        """
        if failure.status == 429 or failure.failure == "connect":
            return None
        still_running = failure.failure == "timeout" or failure.status == 504
        watch_until = deadline if still_running else min(deadline, time.monotonic() + self.adoption_wait)
        pause = self.policy.initial_wait
        while True:
            verdict = self._look(deadline, tolerate_errors=still_running)
            if verdict is not None and verdict.outcome is Outcome.ADOPT:
                return self._adopt(verdict.recording)
            if verdict is not None and verdict.outcome is Outcome.AMBIGUOUS:
                raise _Decided(self._ambiguous(failure, verdict))
            remaining = watch_until - time.monotonic()
            if remaining <= 0:
                break
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, self.policy.max_wait)
        if still_running:
            raise _Decided(self._not_resent(failure))
        log.info(
            "No recording from the failed start on call %s after %.1f s; sending the start again.",
            self.call_sid,
            self.adoption_wait,
        )
        return None

    def _look(self, deadline: float, *, tolerate_errors: bool) -> Verdict | None:
        """Read every page of the call's recordings and judge them; ``None`` if they could not be read."""
        # The look-ups share the start's budget rather than each getting a whole one.
        policy = self.policy.replace(budget=max(deadline - time.monotonic(), 0.001))
        try:
            recordings = self.hook.list_call_recordings(
                self.call_sid, account_sid=self.account_sid, retry_policy=policy, max_pages=SNAPSHOT_MAX_PAGES
            )
        except TelnyxApiError:
            if not tolerate_errors:
                raise  # the start's own retry loop looks again before anything is sent
            return None  # keep watching: sending the start again is not an option
        return judge(recordings, self.snapshot, self.params)

    def _adopt(self, recording: dict[str, Any]) -> dict[str, Any]:
        log.warning(
            "Adopting recording %s on call %s (status %s, track %s): it is new since the start was first "
            "sent and matches it, and the start's reply was lost, so no second recording is started.",
            recording.get("sid"),
            self.call_sid,
            recording.get("status"),
            recording.get("track", "not reported"),
        )
        return recording

    def _ambiguous(self, failure: TelnyxApiError, verdict: Verdict) -> AmbiguousStartError:
        return AmbiguousStartError(
            status=failure.status,
            method=failure.method,
            path=failure.path,
            detail=f"{failure.detail or 'the reply was lost'}; new recordings matching this start on call "
            f"{self.call_sid}: {', '.join(verdict.sids())}",
            failure=failure.failure,
            hint=(
                "Several starts with the same parameters ran on this call at the same moment and this one's "
                "reply was lost, so which recording is its own cannot be told. None was picked: check the "
                "call's recordings and stop the ones you do not want."
            ),
        )

    def _not_resent(self, failure: TelnyxApiError) -> TelnyxApiError:
        return TelnyxApiError(
            status=failure.status,
            method=failure.method,
            path=failure.path,
            code=failure.code,
            title=failure.title,
            detail=failure.detail,
            failure=failure.failure,
            hint=(
                f"The start timed out and no recording showed up on call {self.call_sid} within the retry "
                "budget. It was not sent again, as the service may still carry it out: check the call's "
                "recordings before starting another."
            ),
        )
