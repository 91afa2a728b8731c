"""Exact starts, the worker's side: what the receiver saw of a start's tokens, checked against the service.

A start in exact mode asks ``GET {receiver}/starts/{token}`` (see :mod:`telnyx_provider.plugins.start_tokens`)
for every token it sent. A sighting counts only once the service confirms it: the recording is on the
start's call and matches what the start asked for. A recording an earlier attempt created, proven the
start's by its token, is stopped when another one is the start's own (superseded).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from telnyx_provider.adoption import matches_start
from telnyx_provider.errors import TelnyxApiError
from telnyx_provider.exact_start import sightings_url

if TYPE_CHECKING:
    from collections.abc import Sequence

    from telnyx_provider.exact_start import ExactStart
    from telnyx_provider.hooks.recording import RecordingHook
    from telnyx_provider.params import StartRecordingParams

log = logging.getLogger(__name__)

#: Seconds one question to the receiver may take.
RECEIVER_TIMEOUT = 5.0


class TokenSightings:
    """Reads a start's sightings from the receiver and checks each against the service.

    :param hook: the hook (its session asks the receiver; the API key is never sent there).
    :param call_sid: the start's call.
    :param account_sid: the account.
    :param params: the start's parameters.
    :param exact: the receiver.
    """

    def __init__(
        self,
        hook: RecordingHook,
        call_sid: str,
        account_sid: str,
        params: StartRecordingParams,
        exact: ExactStart,
    ) -> None:
        self.hook = hook
        self.call_sid = call_sid
        self.account_sid = account_sid
        self.params = params
        self.exact = exact

    def found(self, tokens: Sequence[str]) -> tuple[list[dict[str, Any]], bool]:
        """The verified recordings this start's tokens name (oldest first); whether any answer came."""
        found: dict[str, dict[str, Any]] = {}
        answered = False
        for token in tokens:
            sightings = self.ask(token)
            answered = answered or sightings is not None
            for sid in dict.fromkeys(str(s.get("recording_sid")) for s in sightings or ()):
                recording = self.verified(sid)
                if recording is not None:
                    found.pop(sid, None)
                    found[sid] = recording
        return list(found.values()), answered

    def ask(self, token: str) -> list[dict[str, Any]] | None:
        """The receiver's sightings of ``token``, or ``None`` when it could not be asked."""
        try:
            # The hook's session, but not its headers (no API key) nor its CA bundle (which is Telnyx's):
            # the receiver is Airflow's API server, verified against the system's trust store.
            reply = self.hook.get_conn().get(
                sightings_url(self.exact.receiver, token),
                timeout=RECEIVER_TIMEOUT,
                allow_redirects=False,
                verify=True,
            )
            if reply.status_code != 200:
                raise ValueError(f"HTTP {reply.status_code}")
            sightings = reply.json()["sightings"]
            return [s for s in sightings if isinstance(s, dict) and s.get("recording_sid")]
        except Exception as error:  # an unreachable or wrong receiver: asked again, then reported
            log.warning("Could not ask the receiver %s about a start token: %s", self.exact.receiver, error)
            return None

    def verified(self, sid: str) -> dict[str, Any] | None:
        """The sighted recording as the service has it, if it is on this call and fits the start."""
        try:
            recording = self.hook.get_recording(sid, account_sid=self.account_sid)
        except TelnyxApiError as error:
            log.info("Recording %s, named by a start token, cannot be read yet: %s", sid, error)
            return None
        if recording.get("call_sid") != self.call_sid or not matches_start(recording, self.params):
            log.warning(
                "A callback with this start's token named recording %s, which is not on call %s or does not "
                "match the start: ignored.",
                sid,
                self.call_sid,
            )
            return None
        return recording


def stop_superseded(
    hook: RecordingHook, recording: dict[str, Any], kept: dict[str, Any], *, account_sid: str | None
) -> None:
    """Stop a recording an earlier attempt of a start created, now that another one is the start's."""
    sid, call = str(recording.get("sid")), str(recording.get("call_sid"))
    try:
        hook.stop_call_recording(call, sid, account_sid=account_sid)
    except TelnyxApiError as error:
        if error.status != 422:  # 422: it has ended already
            log.error("Could not stop superseded recording %s on call %s: %s", sid, call, error)
            return
    log.warning(
        "Stopped recording %s on call %s: an earlier attempt of this start created it (its token proves it), "
        "and recording %s is the start's own.",
        sid,
        call,
        kept.get("sid"),
    )
