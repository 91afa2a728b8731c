"""Exact starts, the worker's side: what the receiver saw of a start's tokens, checked against the service.

A start in exact mode asks ``GET {receiver}/starts/{token}`` (see :mod:`telnyx_provider.plugins.start_tokens`)
for every token it sent. A sighting counts only once the service confirms it: the recording is on the
start's call and matches what the start asked for. A recording an earlier attempt created, proven the
start's by its token, is stopped when another one is the start's own (superseded).
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

import requests

from telnyx_provider.adoption import matches_start
from telnyx_provider.errors import TelnyxApiError
from telnyx_provider.exact_start import (
    SETTLEMENT_MAC_HEADER,
    settle_url,
    settlement_body,
    settlement_mac,
    sightings_url,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from telnyx_provider.exact_start import ExactStart
    from telnyx_provider.hooks.recording import RecordingHook
    from telnyx_provider.params import StartRecordingParams

log = logging.getLogger(__name__)

#: Seconds one question to the receiver may take, its whole answer read.
RECEIVER_TIMEOUT = 5.0
#: The largest answer read from the receiver (a token's sightings are a few hundred bytes).
MAX_ANSWER_BYTES = 65536


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
            sightings = json.loads(self._answer(sightings_url(self.exact.receiver, token)))["sightings"]
            return [s for s in sightings if isinstance(s, dict) and s.get("recording_sid")]
        except Exception as error:  # an unreachable or wrong receiver: asked again, then reported
            # requests' messages quote the URL asked, which holds the token: never in a log line.
            text = " ".join(str(error).split()).replace(token, "<start token>")
            reason = f"{type(error).__name__}: {text[:200]}"
            log.warning("Could not ask the receiver %s about a start token: %s", self.exact.receiver, reason)
            return None

    def _answer(self, url: str) -> bytes:
        """The body of ``GET url``: whole within ``RECEIVER_TIMEOUT`` seconds and ``MAX_ANSWER_BYTES``.

        A receiver that trickles its answer or never ends it (a wrong or hostile ``receiver_url``) can hold
        a start no longer than that, nor fill its memory. The hook's session (pooling, the environment's
        proxies) but nothing of the hook's credentials: no API key, no ``.netrc`` entry, and the system's
        trust store rather than the connection's CA bundle (which is Telnyx's).
        """
        deadline = time.monotonic() + RECEIVER_TIMEOUT
        with self.hook.get_conn().get(
            url,
            timeout=RECEIVER_TIMEOUT,
            allow_redirects=False,
            verify=True,
            stream=True,
            auth=_NO_AUTH,
        ) as reply:
            if reply.status_code != 200:
                raise ValueError(f"HTTP {reply.status_code}")
            body = bytearray()
            # read1: whatever has arrived (urllib3 2); read(n) would wait for n bytes of a trickle.
            read = getattr(reply.raw, "read1", None) or reply.raw.read
            while chunk := read(8192, decode_content=True):
                body += chunk
                if len(body) > MAX_ANSWER_BYTES:
                    raise ValueError(f"its answer runs past {MAX_ANSWER_BYTES} bytes")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"its answer took longer than {RECEIVER_TIMEOUT:g} s")
            return bytes(body)

    def settle(self, kept: dict[str, Any], tokens: Sequence[str]) -> bool:
        """Tell the receiver the start kept ``kept`` and sent ``tokens``: from then on the receiver stops any
        other recording a callback with one of them names (``POST {receiver}/starts/settled``, with an HMAC
        of the body under the API key, which itself is not sent). Whether the receiver took it."""
        callback = self.params.recording_status_callback or ""
        body = settlement_body(self.call_sid, str(kept.get("sid")), list(tokens))
        try:
            reply = self.hook.get_conn().post(
                settle_url(self.exact.receiver, callback),
                data=body,
                headers={
                    "Content-Type": "application/json",
                    SETTLEMENT_MAC_HEADER: settlement_mac(self.hook.config.api_key, body),
                },
                timeout=RECEIVER_TIMEOUT,
                allow_redirects=False,
                verify=True,
                auth=_NO_AUTH,
            )
            reply.close()
        except Exception as error:
            log.warning(
                "Could not settle the start with the receiver %s: %s",
                self.exact.receiver,
                type(error).__name__,
            )
            return False
        if reply.status_code != 200:
            log.warning(
                "The receiver %s refused the start's settlement (HTTP %s): the callback URL's connection on "
                "the API server must hold the same API key as the workers' one.",
                self.exact.receiver,
                reply.status_code,
            )
            return False
        return True

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
) -> bool:
    """Stop a recording an earlier attempt of a start created, now that another one is the start's.

    :return: whether it is stopped (or had ended already); ``False`` when the stop failed (logged).
    """
    sid, call = str(recording.get("sid")), str(recording.get("call_sid"))
    try:
        hook.stop_call_recording(call, sid, account_sid=account_sid)
    except TelnyxApiError as error:
        if error.status != 422:  # 422: it has ended already
            log.warning("Could not stop superseded recording %s on call %s: %s", sid, call, error)
            return False
    log.warning(
        "Stopped recording %s on call %s: an earlier attempt of this start created it (its token proves it), "
        "and recording %s is the start's own.",
        sid,
        call,
        kept.get("sid"),
    )
    return True


class _NoAuth(requests.auth.AuthBase):
    """Given as ``auth``: keeps ``requests`` from adding credentials from ``~/.netrc`` to the question."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        return request


_NO_AUTH = _NoAuth()
