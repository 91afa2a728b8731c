"""Pre-signed-looking media links: ``/media/{sid}.wav?Expires=<unix>&Signature=<hmac>`` (pure, no I/O).

Like an S3 pre-signed URL, a link needs no ``Authorization`` header, is valid until ``Expires`` (Unix seconds
in the service's clock) and refuses any change to its path or expiry with 403. The file's extension
(``wav`` or ``mp3``) follows the format the sandbox serves; a test may replace every link by one of its own
(:attr:`MediaLinks.link`), e.g. a URL on a collector that records what it receives.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

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
        #: The extension of new links: the format served (``wav`` or ``mp3``).
        self.extension = "wav"
        #: A link reported instead of the signed one, or None: ``{sid}`` is replaced by the recording's SID
        #: and ``{path}`` by the signed link's path and query (to reach this sandbox under another name).
        self.link: str | None = None

    def _signature(self, file_name: str, expires: int) -> str:
        message = f"{file_name}\n{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def sign(self, prefix: str, recording_sid: str, now: float) -> str:
        """Return a link to a recording's media, valid for ``ttl`` seconds from ``now`` (or ``link``).

        :param prefix: base of media links, e.g. ``http://127.0.0.1:8765/media/``.
        :param recording_sid: the recording.
        :param now: the current time in the service's clock.
        """
        expires = math.ceil(now + self.ttl)
        file_name = f"{recording_sid}.{self.extension}"
        signed = f"{prefix}{file_name}?Expires={expires}&Signature={self._signature(file_name, expires)}"
        if self.link is None:
            return signed
        parts = urlsplit(signed)
        return self.link.replace("{sid}", recording_sid).replace("{path}", f"{parts.path}?{parts.query}")

    def refusal(
        self, recording_sid: str, query: Mapping[str, str], now: float, extension: str = "wav"
    ) -> tuple[str, str] | None:
        """Return why a link is refused, as S3 would say it (``(code, message)``), or None if it is valid.

        :param recording_sid: the recording the path names.
        :param query: the link's decoded query parameters.
        :param now: the current time in the service's clock.
        :param extension: the extension the path names (part of what is signed).
        """
        raw_expires, signature = query.get("Expires", ""), query.get("Signature", "")
        if not raw_expires or not signature:
            return "AccessDenied", "Query-string authentication requires the Signature and Expires parameters"
        try:
            expires = int(raw_expires)
        except ValueError:
            return "AccessDenied", "Invalid date (should be seconds since epoch)"
        if not hmac.compare_digest(signature, self._signature(f"{recording_sid}.{extension}", expires)):
            return (
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided",
            )
        if now >= expires:
            return "AccessDenied", "Request has expired"
        return None
