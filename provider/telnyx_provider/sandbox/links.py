"""Pre-signed-looking media links: ``/media/{sid}.wav?Expires=<unix>&Signature=<hmac>`` (pure, no I/O).

Like an S3 pre-signed URL, a link needs no ``Authorization`` header, is valid until ``Expires`` (Unix seconds
in the service's clock) and refuses any change to its path or expiry with 403.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

DEFAULT_TTL = 600.0  # seconds; Call Control's pre-signed recording links last 10 minutes


class MediaLinks:
    """Signs and checks media links with a secret of its own.

    :param ttl: seconds a link stays valid after it was handed out (rounded up to the whole second).
    :param secret: the HMAC key; random if None.
    """

    def __init__(self, ttl: float = DEFAULT_TTL, secret: bytes | None = None) -> None:
        if not ttl > 0 or not math.isfinite(ttl):
            raise ValueError(f"media_url_ttl must be a positive number of seconds, got {ttl}")
        self.ttl = float(ttl)
        self._secret = secret or secrets.token_bytes(32)

    def _signature(self, recording_sid: str, expires: int) -> str:
        message = f"{recording_sid}.wav\n{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def sign(self, prefix: str, recording_sid: str, now: float) -> str:
        """Return a link to a recording's media, valid for :attr:`ttl` seconds from ``now``.

        :param prefix: base of media links, e.g. ``http://127.0.0.1:8765/media/``.
        :param recording_sid: the recording.
        :param now: the current time in the service's clock.
        """
        expires = math.ceil(now + self.ttl)
        signature = self._signature(recording_sid, expires)
        return f"{prefix}{recording_sid}.wav?Expires={expires}&Signature={signature}"

    def refusal(self, recording_sid: str, query: Mapping[str, str], now: float) -> tuple[str, str] | None:
        """Return why a link is refused, as S3 would say it (``(code, message)``), or None if it is valid.

        :param recording_sid: the recording the path names.
        :param query: the link's decoded query parameters.
        :param now: the current time in the service's clock.
        """
        raw_expires, signature = query.get("Expires", ""), query.get("Signature", "")
        if not raw_expires or not signature:
            return "AccessDenied", "Query-string authentication requires the Signature and Expires parameters"
        try:
            expires = int(raw_expires)
        except ValueError:
            return "AccessDenied", "Invalid date (should be seconds since epoch)"
        if not hmac.compare_digest(signature, self._signature(recording_sid, expires)):
            return (
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided",
            )
        if now >= expires:
            return "AccessDenied", "Request has expired"
        return None
