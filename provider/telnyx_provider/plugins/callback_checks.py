"""The receiver's checks, in the order it runs them, each refusing with a :class:`Refusal`.

:func:`check_headers` needs no connection; :func:`verify_with_connection` looks the connection up (cached per
worker) and verifies the signature with its key; :func:`parse_fields` reads the verified form;
:func:`claim` records the signature in the store every API-server worker shares, so a replay is refused
by all of them (:func:`release` forgets it again when the callback was not handled).
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from contextlib import suppress
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool

from telnyx_provider.params import require_identifier
from telnyx_provider.plugins.receiver_store import ReceiverStoreError
from telnyx_provider.plugins.recording_events import ReceiverConfigError
from telnyx_provider.signatures import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureError,
    check_signature_headers,
    verify_signed_request,
)

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable, Mapping

    from telnyx_provider.plugins.receiver_store import ReceiverStore
    from telnyx_provider.plugins.recording_events import CallbackKey
    from telnyx_provider.signatures import SignedRequest, VerifiedSignature

log = logging.getLogger(__name__)

REQUIRED_FIELDS = ("AccountSid", "RecordingSid", "RecordingStatus")
#: The receiver's namespace in the shared store: the signatures it accepted, until they are stale anyway.
REPLAY_NAMESPACE = "replay"
#: Seconds the clocks of the hosts sharing the store (API servers) may differ by: a replay row is kept that
#: much past the tolerance, so a host whose clock is ahead does not purge a row that a host whose clock is
#: behind still needs (it still accepts the request's timestamp).
MAX_CLOCK_SKEW = 60.0
UNAUTHORIZED = "The request's Telnyx signature could not be verified."
UNAVAILABLE = "The receiver cannot check this callback right now; send it again later."
#: Airflow's own rule for connection ids (``airflow.models.connection.RE_SANITIZE_CONN_ID``, 250 at most).
_CONN_ID = re.compile(r"[\w#!()\-.:/\\]{1,250}")


class Refusal(Exception):
    """A request the receiver refuses: the HTTP status, what the sender is told, and why (for our log)."""

    def __init__(self, status: int, detail: str, reason: str | None = None) -> None:
        super().__init__(reason or detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class VerifiedCallback:
    """A callback whose signature, freshness, account and uniqueness the receiver checked.

    :param conn_id: the connection whose key verified it.
    :param account_sid: its ``AccountSid``, the connection's login.
    :param fields: the callback's fields (for a GET, less the receiver's URL parameters).
    :param url_parameters: the values of the receiver's URL parameters (``ReceiverSettings.url_parameters``)
        in the URL's query. Telnyx's signature covers them for a GET, not for a POST.
    :param signature: the verified signature.
    """

    conn_id: str
    account_sid: str
    fields: dict[str, str]
    url_parameters: dict[str, str]
    signature: VerifiedSignature


def check_headers(headers: Mapping[str, str], conn_id: str, tolerance: float) -> SignedRequest:
    """The checks that need no connection: the signature headers
    (:func:`~telnyx_provider.signatures.check_signature_headers`) and the form of ``conn_id``; 401 otherwise.
    """
    try:
        signed = check_signature_headers(
            headers.get(SIGNATURE_HEADER), headers.get(TIMESTAMP_HEADER), tolerance=tolerance
        )
    except SignatureError as error:
        raise Refusal(401, UNAUTHORIZED, str(error)) from None
    if not _CONN_ID.fullmatch(conn_id):
        raise Refusal(401, UNAUTHORIZED, "malformed connection id")
    return signed


async def verify_with_connection(
    conn_id: str,
    payload: bytes,
    signed: SignedRequest,
    connection_keys: Callable[[str], CallbackKey],
    lookups: asyncio.Semaphore,
    known_lookups: asyncio.Semaphore | None = None,
) -> tuple[CallbackKey, VerifiedSignature]:
    """The connection's key and account (looked up in a worker thread, at most ``lookups`` at once), and
    the request's signature verified with that key; 401 otherwise, 503 if the lookup itself failed (a
    secrets backend or the database unreachable: Telnyx delivers again later).

    When ``connection_keys`` is a :class:`~telnyx_provider.plugins.recording_events.ConnectionKeys`' ``get``
    (the default), a fresh cached answer is used without waiting for a lookup slot, and a connection whose
    key this process has read before is read again under ``known_lookups``: requests naming made-up ids,
    each a lookup, never hold up the callbacks of real connections.
    """
    cache: Any = getattr(connection_keys, "__self__", None)
    key: CallbackKey | ReceiverConfigError | None = None
    if callable(getattr(cache, "cached", None)):
        key = cache.cached(conn_id)
        if key is None and known_lookups is not None and cache.known(conn_id):
            lookups = known_lookups
    if key is None:
        key = await _look_up_in_a_slot(conn_id, connection_keys, lookups)
    if not isinstance(key, ReceiverConfigError):
        try:
            return key, verify_signed_request(public_key=key.public_key, payload=payload, request=signed)
        except SignatureError as error:
            raise Refusal(401, UNAUTHORIZED, f"{error} (connection {conn_id!r})") from None
    # The same signature check a wrong key costs: the work done does not tell which connections exist.
    with suppress(SignatureError):
        verify_signed_request(public_key=_stand_in_key(), payload=payload, request=signed)
    raise Refusal(401, UNAUTHORIZED, str(key))


async def _look_up_in_a_slot(
    conn_id: str, connection_keys: Callable[[str], CallbackKey], lookups: asyncio.Semaphore
) -> CallbackKey | ReceiverConfigError:
    async with lookups:
        # The failure comes back as a value, not raised across the thread: both answers cost the same.
        try:
            return await run_in_threadpool(_look_up, connection_keys, conn_id)
        except Exception as error:  # a secrets backend or the database failing: not the sender's fault
            reason = f"looking up connection {conn_id!r} failed ({type(error).__name__}: {error})"
            raise Refusal(503, UNAVAILABLE, reason) from None


def _look_up(
    connection_keys: Callable[[str], CallbackKey], conn_id: str
) -> CallbackKey | ReceiverConfigError:
    try:
        return connection_keys(conn_id)
    except ReceiverConfigError as error:
        return error


@cache
def _stand_in_key() -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )


async def claim(store: ReceiverStore, tolerance: float, callback: VerifiedCallback) -> str:
    """Record the callback's signature as accepted in the store every worker shares; refuse a replay (401)
    or when the store fails (503). Returns the key to :func:`release` it by."""
    verified = callback.signature
    key = hashlib.sha256(verified.signature).hexdigest()
    # Kept until the timestamp is past the tolerance on every host (then the timestamp check refuses it),
    # also on a host whose clock is behind the one that purges expired rows.
    ttl = max(1.0, verified.timestamp + tolerance + MAX_CLOCK_SKEW + 1 - time.time())
    seen = {"conn_id": callback.conn_id, "recording_sid": callback.fields["RecordingSid"]}
    try:
        first = await run_in_threadpool(store.add_if_absent, REPLAY_NAMESPACE, key, seen, ttl)
    except ReceiverStoreError as error:
        raise Refusal(503, UNAVAILABLE, f"replay check failed: {error}") from None
    if not first:
        reason = f"replayed request: this signature was already accepted (connection {callback.conn_id!r})"
        raise Refusal(401, UNAUTHORIZED, reason)
    return key


async def release(store: ReceiverStore, key: str) -> None:
    """Forget a claimed signature (nothing was stored: the same delivery may come again)."""
    try:
        await run_in_threadpool(store.delete, REPLAY_NAMESPACE, key)
    except ReceiverStoreError as error:  # the same bytes stay refused until stale; a retry signed anew is not
        log.warning("Could not forget a refused callback's signature: %s", error)


def parse_fields(payload: bytes, *, drop: frozenset[str]) -> dict[str, str]:
    """The fields of a verified form (less the names in ``drop``); 400 if it is not a callback."""
    try:
        text = payload.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text), errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise Refusal(400, "The callback is not a UTF-8 form (name=value pairs joined by '&').") from None
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name in drop:
            continue
        if name in fields:
            raise Refusal(400, f"The field {name!r} appears more than once.")
        fields[name] = value
    missing = [name for name in REQUIRED_FIELDS if not fields.get(name)]
    if missing:
        raise Refusal(400, f"The callback lacks {', '.join(missing)}.")
    try:
        require_identifier("AccountSid", fields["AccountSid"])
    except ValueError:
        raise Refusal(400, "AccountSid is not a valid account id.") from None
    return fields
