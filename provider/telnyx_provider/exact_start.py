"""Exact mode: a start proves which recording is its own with a secret token in its status-callback URL.

Pure: no I/O, no Airflow. When a start's ``recording_status_callback`` goes to this provider's receiver
(the plugin's ``/telnyx/recording-status`` route), each POST attempt adds a fresh token of its own to that
URL's query (``start_token=...``, 256 random bits) and subscribes to ``in-progress``. Telnyx sends the
signed ``in-progress`` callback to that URL as soon as the recording exists; the receiver keeps what it saw
under the token, and the start asks for it at ``{receiver}/starts/{token}``. A recording named there is the
attempt's own: no other start knows the token. The list of the call's recordings is not needed, so a
lagging list or a skewed clock changes nothing.

A start that was sent more than once **settles**: it tells the receiver which recording it kept and every
token it sent (``POST {receiver}/starts/settled``, authenticated with an HMAC of the body under the
connection's API key). A callback carrying one of those tokens that names another recording of the call
(an earlier attempt's, whose callback came late, maybe after the task ended) is then stopped by the
receiver itself: a superseded recording is never left running.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from telnyx_provider.errors import TelnyxValidationError

if TYPE_CHECKING:
    from telnyx_provider.params import StartRecordingParams

#: The receiver plugin's status-callback route, as mounted on the API server.
RECEIVER_ROUTE = "/telnyx/recording-status"
#: The query parameter of the callback URL that carries a start's token.
TOKEN_PARAMETER = "start_token"
#: What a token looks like: 43 URL-safe characters (32 random bytes).
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{43}")
_CALLBACK_ROUTE = "/recording-status"
#: Where a start settles (``POST``), below the receiver's base.
SETTLE_ROUTE = "/starts/settled"
#: The header carrying the settlement's HMAC (SHA-256, hex) under the connection's API key.
SETTLEMENT_MAC_HEADER = "telnyx-provider-mac"
#: The most tokens one settlement names (a start sends a handful; a task's retries add theirs).
MAX_SETTLED_TOKENS = 64


def new_token() -> str:
    """A fresh start token: 32 random bytes, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


def is_token(value: object) -> bool:
    """Whether ``value`` has the shape of a start token."""
    return isinstance(value, str) and TOKEN_PATTERN.fullmatch(value) is not None


def goes_to_receiver(callback_url: str | None) -> bool:
    """Whether a status-callback URL points at this provider's receiver (``.../telnyx/recording-status``)."""
    if not callback_url:
        return False
    return urlsplit(callback_url).path.rstrip("/").endswith(RECEIVER_ROUTE)


def receiver_base(callback_url: str, receiver_url: str | None = None) -> str:
    """Where the workers ask the receiver: ``receiver_url`` if given, else the callback URL's ``.../telnyx``.

    :param callback_url: the start's status-callback URL (the receiver's route).
    :param receiver_url: the connection extra ``receiver_url``: the receiver's ``/telnyx`` base as the
        workers reach it, when that is not the address Telnyx calls.
    """
    if receiver_url:
        return receiver_url.rstrip("/")
    parts = urlsplit(callback_url)
    path = parts.path.rstrip("/")
    return urlunsplit((parts.scheme, parts.netloc, path[: -len(_CALLBACK_ROUTE)], "", ""))


def sightings_url(base: str, token: str) -> str:
    """The receiver's answer about one token: ``{base}/starts/{token}``."""
    return f"{base}/starts/{token}"


def settle_url(base: str, callback_url: str) -> str:
    """``{base}/starts/settled``, with the callback URL's ``conn_id`` (the connection the receiver checks the
    start's callbacks with, and whose API key authenticates the settlement)."""
    conn_id = dict(parse_qsl(urlsplit(callback_url).query)).get("conn_id")
    return f"{base}{SETTLE_ROUTE}" + (f"?{urlencode({'conn_id': conn_id})}" if conn_id else "")


def settlement_body(call_sid: str, kept: str, tokens: list[str]) -> bytes:
    """A settlement as sent: the call, the recording the start kept, and every token it sent."""
    return json.dumps(
        {"call_sid": call_sid, "kept": kept, "tokens": tokens}, sort_keys=True, separators=(",", ":")
    ).encode()


def settlement_mac(api_key: str, body: bytes) -> str:
    """The HMAC-SHA256 (hex) of a settlement's body under the API key: proof the sender holds the key,
    which itself never leaves."""
    return hmac.new(api_key.strip().encode(), body, hashlib.sha256).hexdigest()


def with_token(callback_url: str, token: str) -> str:
    """``callback_url`` with ``start_token=token`` in its query (replacing any there)."""
    parts = urlsplit(callback_url)
    query = [(name, value) for name, value in parse_qsl(parts.query, keep_blank_values=True)]
    query = [(name, value) for name, value in query if name != TOKEN_PARAMETER]
    query.append((TOKEN_PARAMETER, token))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def with_in_progress(events: str | None) -> str:
    """The callback events with ``in-progress`` added (``None`` is the API's default, ``completed``)."""
    chosen = (events or "completed").split()
    return " ".join(["in-progress", *(event for event in chosen if event != "in-progress")])


def token_params(params: StartRecordingParams, token: str) -> StartRecordingParams:
    """What one attempt of an exact start sends: its token in the URL, ``in-progress`` subscribed."""
    if params.recording_status_callback is None:  # pragma: no cover - exact mode needs a callback URL
        raise ValueError("exact mode needs a recording_status_callback")
    return replace(
        params,
        recording_status_callback=with_token(params.recording_status_callback, token),
        recording_status_callback_event=with_in_progress(params.recording_status_callback_event),
    )


@dataclass(frozen=True)
class ExactStart:
    """An exact start's receiver: where its tokens' sightings are read.

    :param receiver: the receiver's ``/telnyx`` base as the workers reach it.
    """

    receiver: str


def exact_start_for(
    params: StartRecordingParams, exact_start: bool | None, receiver_url: str | None = None
) -> ExactStart | None:
    """Whether (and through which receiver) a start is exact.

    :param params: the validated start parameters.
    :param exact_start: ``None``: exact when the callback goes to the receiver; ``True``: required;
        ``False``: never.
    :param receiver_url: the connection extra ``receiver_url`` (see :func:`receiver_base`).
    :raises TelnyxValidationError: ``exact_start=True`` without a callback URL to the receiver.
    """
    callback = params.recording_status_callback
    if exact_start is False:
        return None
    if not goes_to_receiver(callback):
        if exact_start:
            raise TelnyxValidationError(
                "recording_status_callback",
                callback,
                f"the URL of this provider's receiver (path ending in {RECEIVER_ROUTE}, on the Airflow API "
                "server) when exact_start=True",
            )
        return None
    assert callback is not None
    return ExactStart(receiver_base(callback, receiver_url))
