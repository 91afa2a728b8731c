"""The receiver's side of exact starts: what signed callbacks carrying a start token said, and who may ask.

A start in exact mode puts ``start_token=<token>`` in its status-callback URL (see
:mod:`telnyx_provider.exact_start`). When a callback to ``/telnyx/recording-status`` has been **verified**
(signature, timestamp, replay) and carries a token, the receiver keeps a *sighting* — the token, the
recording's SID, the call, the account, the status and when it was seen — in the receiver's shared store
(the metadata database: every API-server worker sees the same sightings, and they survive restarts).

``GET /telnyx/starts/{token}`` answers ``{"start_token": ..., "sightings": [...]}``, oldest first (an empty
list when nothing was seen). The token is the capability: 256 random bits that only the start, its task
state and Telnyx know; the answer carries no media link. The URL's query is not covered by Telnyx's
signature: a token attached to another recording's genuine callback could only come from someone who holds
the token, and a start still checks every sighting against the service (same call, started through the
API) before adopting it.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Protocol

from telnyx_provider.exact_start import TOKEN_PARAMETER, is_token
from telnyx_provider.plugins.callback_checks import Refusal

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from telnyx_provider.plugins.callback_checks import VerifiedCallback

log = logging.getLogger(__name__)

#: The receiver store's namespace for sightings.
NAMESPACE = "start_tokens"
#: How long a sighting is kept: long enough for a task retry after a lost reply to ask for it.
DEFAULT_TTL_SECONDS = 3 * 24 * 3600.0
#: The callback fields a sighting keeps (never ``RecordingUrl``, a bearer link to the audio).
_KEPT = {
    "RecordingSid": "recording_sid",
    "CallSid": "call_sid",
    "AccountSid": "account_sid",
    "RecordingStatus": "status",
}


class SightingStore(Protocol):
    """The part of the receiver's shared store sightings use (``plugins.receiver_store.ReceiverStore``)."""

    def add_if_absent(
        self, namespace: str, key: str, value: dict[str, Any], ttl_seconds: float
    ) -> bool:  # pragma: no cover - a protocol
        """Store ``value`` under ``key`` unless a value is there; whether it was stored."""
        ...

    def list_prefix(
        self, namespace: str, prefix: str
    ) -> list[tuple[str, dict[str, Any]]]:  # pragma: no cover
        """Every ``(key, value)`` whose key starts with ``prefix``, expired ones left out."""
        ...


__all__ = [
    "DEFAULT_TTL_SECONDS",
    "NAMESPACE",
    "TOKEN_PARAMETER",
    "SightingStore",
    "answer",
    "record_sighting",
    "sighting_step",
    "sightings",
]


def sighting_step(store: SightingStore) -> Callable[[VerifiedCallback], None]:
    """The receiver's step for a verified callback: keep its sighting when its URL carries a start token.

    A store that fails refuses the callback with a 503 (nothing else is stored; Telnyx may send it again).
    """

    def keep(callback: VerifiedCallback) -> None:
        token = callback.url_parameters.get(TOKEN_PARAMETER)
        if not is_token(token):
            return
        try:
            new = record_sighting(store, str(token), callback.fields)
        except Exception as error:
            raise Refusal(
                503, "The callback could not be stored; send it again.", f"sighting: {error}"
            ) from None
        log.info(
            "Telnyx callback: recording %s (%s) carries a start token; sighting %s.",
            callback.fields.get("RecordingSid"),
            callback.fields.get("RecordingStatus"),
            "kept" if new else "already kept",
        )

    return keep


def record_sighting(
    store: SightingStore,
    token: str,
    fields: Mapping[str, str],
    *,
    ttl_seconds: float = DEFAULT_TTL_SECONDS,
    now: float | None = None,
) -> bool:
    """Keep what a verified callback carrying ``token`` said; whether it was new (a repeat is kept once).

    :param store: the shared store.
    :param token: the ``start_token`` of the callback URL (already checked to be one).
    :param fields: the callback's verified fields (``RecordingSid``, ``CallSid``, ``AccountSid``, ...).
    :param ttl_seconds: how long to keep it.
    :param now: the time seen (Unix seconds; the receiver's clock).
    """
    sighting: dict[str, Any] = {name: fields.get(field) for field, name in _KEPT.items()}
    sighting["seen_at"] = time.time() if now is None else now
    key = f"{token}/{sighting['recording_sid']}/{sighting['status']}"
    return store.add_if_absent(NAMESPACE, key, sighting, ttl_seconds)


def sightings(store: SightingStore, token: str) -> list[dict[str, Any]]:
    """What was seen for ``token``, oldest first."""
    found = [value for _key, value in store.list_prefix(NAMESPACE, f"{token}/")]
    return sorted(found, key=lambda sighting: float(sighting.get("seen_at") or 0.0))


def answer(store: SightingStore, token: str) -> tuple[int, dict[str, Any]]:
    """The HTTP status and JSON body of ``GET /starts/{token}``."""
    if not is_token(token):
        return 404, {"detail": "Not a start token."}
    return 200, {"start_token": token, "sightings": sightings(store, token)}
