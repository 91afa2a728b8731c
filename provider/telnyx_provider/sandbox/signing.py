"""Ed25519 signatures of status callbacks, as Telnyx signs its webhooks.

Headers ``telnyx-signature-ed25519`` (base64 of the 64-byte signature) and ``telnyx-timestamp``
(Unix seconds), over the bytes ``"{timestamp}|"`` followed by the raw body of a POST. For a GET callback
(fields in the query string) what Telnyx signs is not documented; the sandbox signs ``"{timestamp}|"``
followed by the raw query string.
``cryptography`` (which Airflow brings) is imported only when a signer is made.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

SIGNATURE_HEADER = "telnyx-signature-ed25519"
TIMESTAMP_HEADER = "telnyx-timestamp"


def signed_message(timestamp: str, payload: bytes) -> bytes:
    """Return the bytes a callback's signature covers.

    :param timestamp: the ``telnyx-timestamp`` header's value.
    :param payload: the raw POST body, or the raw query string of a GET.
    """
    return timestamp.encode() + b"|" + payload


class CallbackSigner:
    """An Ed25519 key pair generated for one sandbox, signing its callbacks."""

    def __init__(self) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        self._key: Ed25519PrivateKey = Ed25519PrivateKey.generate()
        raw = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.public_key = base64.b64encode(raw).decode()  # 32 raw bytes, as the Telnyx portal shows it

    def headers(self, timestamp: int, payload: bytes) -> dict[str, str]:
        """Return the signature headers of a callback sent at ``timestamp``.

        :param timestamp: Unix seconds (in the service's clock).
        :param payload: the raw POST body, or the raw query string of a GET.
        """
        stamp = str(timestamp)
        signature = self._key.sign(signed_message(stamp, payload))
        return {SIGNATURE_HEADER: base64.b64encode(signature).decode(), TIMESTAMP_HEADER: stamp}
