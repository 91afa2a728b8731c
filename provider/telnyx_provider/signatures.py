"""Telnyx webhook signatures: Ed25519 over ``"{timestamp}|" + raw body``, a time tolerance, a replay cache.

Pure: no I/O and nothing of Airflow. The callback receiver (:mod:`telnyx_provider.plugins.callbacks`) calls
:func:`check_signature_headers` first (no key needed), then :func:`verify_signed_request` on the exact bytes
it received with the key of the connection it names. Its replay protection is shared by every API-server
worker (:mod:`telnyx_provider.plugins.receiver_store`); :class:`ReplayCache` is the same rule in one
process's memory. Telnyx sends the signature base64-encoded in ``telnyx-signature-ed25519`` and the Unix
time in ``telnyx-timestamp``; the key is the account's Ed25519 public key, base64 of its 32 raw bytes, as the
Telnyx portal shows it.
"""

from __future__ import annotations

import base64
import binascii
import threading
import time
from dataclasses import dataclass, field

SIGNATURE_HEADER = "telnyx-signature-ed25519"
TIMESTAMP_HEADER = "telnyx-timestamp"
#: Seconds a timestamp may be away from our clock (what Telnyx's own SDK accepts).
DEFAULT_TOLERANCE_SECONDS = 300
_SIGNATURE_BYTES = 64
_KEY_BYTES = 32
_MAX_TIMESTAMP_DIGITS = 12
#: Base64 of 64 bytes is 88 characters; a longer header is refused before it is decoded.
_MAX_SIGNATURE_HEADER = 128


class SignatureError(Exception):
    """A request whose signature or timestamp is missing, malformed, wrong, stale or replayed.

    The message says which, for the receiver's own log; it never quotes the body.
    """


@dataclass(frozen=True)
class VerifiedSignature:
    """What a successful :func:`verify_signature` returns: the signature's bytes and its timestamp."""

    signature: bytes
    timestamp: int


def load_public_key(encoded: object) -> bytes:
    """Decode a public key given as base64 of its 32 raw bytes.

    :param encoded: the key as stored in the connection's extra (``public_key``).
    :raises ValueError: if it is not a string holding base64 of exactly 32 bytes.
    """
    if not isinstance(encoded, str) or not encoded.strip():
        raise ValueError("the public key must be a non-empty base64 string")
    try:
        raw = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the public key is not valid base64") from None
    if len(raw) != _KEY_BYTES:
        raise ValueError(f"the public key must be {_KEY_BYTES} bytes once decoded, not {len(raw)}")
    return raw


def signed_message(timestamp: str, payload: bytes) -> bytes:
    """The bytes Telnyx signs: the timestamp header's value, ``|``, then the raw payload."""
    return timestamp.encode("ascii") + b"|" + payload


@dataclass(frozen=True)
class SignedRequest:
    """A request's signature headers that passed :func:`check_signature_headers` (nothing verified yet).

    :param signature: the 64 signature bytes.
    :param timestamp: the timestamp, Unix seconds.
    :param timestamp_header: the ``telnyx-timestamp`` header exactly as received (it is part of the signed
        message as such).
    """

    signature: bytes
    timestamp: int
    timestamp_header: str


def check_signature_headers(
    signature_header: str | None,
    timestamp_header: str | None,
    *,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> SignedRequest:
    """The checks that need no key: both headers present, a timestamp in Unix seconds within ``tolerance``
    of ``now``, a signature of 64 bytes in base64. A receiver runs them before it looks up any key.

    :param signature_header: the value of ``telnyx-signature-ed25519`` (base64), or ``None``.
    :param timestamp_header: the value of ``telnyx-timestamp`` (Unix seconds), or ``None``.
    :param tolerance: seconds the timestamp may differ from ``now``, either way.
    :param now: the current Unix time (``time.time()`` when ``None``).
    :raises SignatureError: unsigned, malformed or stale.
    """
    if not signature_header or not timestamp_header:
        raise SignatureError(f"unsigned request (no {SIGNATURE_HEADER} or {TIMESTAMP_HEADER} header)")
    timestamp_text = timestamp_header.strip()
    if (
        not timestamp_text.isdigit()
        or not timestamp_text.isascii()
        or len(timestamp_text) > _MAX_TIMESTAMP_DIGITS
    ):
        raise SignatureError(f"malformed {TIMESTAMP_HEADER} header (Unix seconds expected)")
    if len(signature_header) > _MAX_SIGNATURE_HEADER:
        raise SignatureError(f"malformed {SIGNATURE_HEADER} header ({_SIGNATURE_BYTES} bytes expected)")
    try:
        signature = base64.b64decode(signature_header.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError(f"malformed {SIGNATURE_HEADER} header (base64 expected)") from None
    if len(signature) != _SIGNATURE_BYTES:
        raise SignatureError(f"malformed {SIGNATURE_HEADER} header ({_SIGNATURE_BYTES} bytes expected)")
    timestamp = int(timestamp_text)
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise SignatureError(
            f"stale request: its timestamp is {current - timestamp:+.0f} s from ours "
            f"(tolerance {tolerance:g} s)"
        )
    return SignedRequest(signature, timestamp, timestamp_header)


def verify_signed_request(*, public_key: bytes, payload: bytes, request: SignedRequest) -> VerifiedSignature:
    """Check the Ed25519 signature of a request whose headers passed :func:`check_signature_headers`.

    :param public_key: the account's raw 32-byte Ed25519 public key (see :func:`load_public_key`).
    :param payload: the raw body of a POST, or the raw query string of a GET, exactly as received.
    :param request: the checked headers.
    :raises SignatureError: the signature does not match the payload, the timestamp and the key.
    """
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(
            request.signature, signed_message(request.timestamp_header, payload)
        )
    except (InvalidSignature, ValueError):
        raise SignatureError("the signature does not match the request and the public key") from None
    return VerifiedSignature(request.signature, request.timestamp)


def verify_signature(
    *,
    public_key: bytes,
    payload: bytes,
    signature_header: str | None,
    timestamp_header: str | None,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> VerifiedSignature:
    """Check a request's Ed25519 signature and timestamp (:func:`check_signature_headers`, then
    :func:`verify_signed_request`).

    :param public_key: the account's raw 32-byte Ed25519 public key (see :func:`load_public_key`).
    :param payload: the raw body of a POST, or the raw query string of a GET, exactly as received.
    :param signature_header: the value of ``telnyx-signature-ed25519`` (base64), or ``None``.
    :param timestamp_header: the value of ``telnyx-timestamp`` (Unix seconds), or ``None``.
    :param tolerance: seconds the timestamp may differ from ``now``, either way.
    :param now: the current Unix time (``time.time()`` when ``None``).
    :raises SignatureError: unsigned, malformed, stale or badly signed.
    """
    request = check_signature_headers(signature_header, timestamp_header, tolerance=tolerance, now=now)
    return verify_signed_request(public_key=public_key, payload=payload, request=request)


@dataclass
class ReplayCache:
    """Signatures already accepted, kept while their timestamp is within the tolerance.

    Ed25519 signatures are deterministic: the same timestamp and body always give the same signature, so a
    replayed request carries a signature already seen. Past the tolerance, the timestamp check refuses it
    anyway, so entries expire then. Thread-safe; one cache per process: the receiver itself uses the store
    every API-server worker shares instead.

    :param tolerance: seconds an entry is kept after its timestamp (the verification tolerance).
    """

    tolerance: float = DEFAULT_TOLERANCE_SECONDS
    _expiry: dict[bytes, float] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _next_prune: float = field(default=0.0, repr=False)

    def claim(self, verified: VerifiedSignature, now: float | None = None) -> None:
        """Record ``verified`` as seen, or refuse it if it was seen within the tolerance.

        :raises SignatureError: the same signature was claimed before and not released.
        """
        current = time.time() if now is None else now
        with self._lock:
            if current >= self._next_prune:
                self._expiry = {sig: until for sig, until in self._expiry.items() if until > current}
                self._next_prune = current + min(self.tolerance, 60.0)
            until = self._expiry.get(verified.signature)
            if until is not None and until > current:
                raise SignatureError("replayed request: this signature was already accepted")
            # Kept past the timestamp's own window on both sides, as the tolerance applies either way.
            self._expiry[verified.signature] = verified.timestamp + self.tolerance + 1

    def release(self, verified: VerifiedSignature) -> None:
        """Forget ``verified``, so the same request may be delivered again (its handling failed)."""
        with self._lock:
            self._expiry.pop(verified.signature, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._expiry)
