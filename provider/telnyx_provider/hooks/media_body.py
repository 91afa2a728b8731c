"""A media body as it arrives: read as it comes, timed, hashed, its first bytes kept for an audio header.

Behind :mod:`telnyx_provider.hooks.media`. A read timeout bounds each wait for a byte, not a transfer: a
server that sends a byte now and then never trips it and never finishes either. So the body is read as it
arrives (urllib3's ``read1``), and an attempt that receives less than :data:`MIN_TRANSFER_RATE` over a read
timeout's worth of reading is ended as a stall (``failure="timeout"``, retried like any timeout within
``max_retries``).
"""

from __future__ import annotations

import hashlib
import time
import zlib
from typing import TYPE_CHECKING

import requests
from urllib3.exceptions import HTTPError, ReadTimeoutError

from telnyx_provider import media_api, media_length
from telnyx_provider.hooks.media_store import CHUNK_SIZE

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

#: The slowest transfer accepted, in bytes per second, averaged over each read timeout's worth of reading
#: (32 kbit/s: a quarter of the rate at which a mono recording is made).
MIN_TRANSFER_RATE = 4096


class MediaBody:
    """The body of a media reply, read as it arrives.

    :param response: the reply (``stream=True``).
    :param request: the media request (for messages without the link).
    :param window: seconds of reading over which the rate is judged (the read timeout).
    :param decoder: undoes the reply's content coding (see :class:`telnyx_provider.media_length.Decoder`).
    :param clock: a monotonic clock.
    """

    def __init__(
        self,
        response: requests.Response,
        request: media_api.MediaRequest,
        window: float,
        decoder: media_length.Decoder,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.response = response
        self.request = request
        self.window = window
        self.decoder = decoder
        self.clock = clock
        self.wire = 0
        self.size = 0
        self.digest = hashlib.sha256()
        self.head = b""

    def chunks(self) -> Iterator[bytes]:
        """The decoded body, piece by piece as it arrives (hashed and counted on the way; ``wire`` counts
        the body's bytes as sent).

        :raises TelnyxApiError: the transfer was cut (``failure="connection"``), timed out or stalled
            (``failure="timeout"``).
        """
        read = self._reader()
        reading, received = 0.0, 0  # over the current window
        try:
            while True:
                began = self.clock()
                chunk = read()
                reading += self.clock() - began
                if not chunk:
                    return
                self.wire += len(chunk)
                received += len(chunk)
                if reading >= self.window:
                    if received < MIN_TRANSFER_RATE * reading:
                        failure, detail = "timeout", self._stalled(received, reading)
                        break
                    reading, received = 0.0, 0
                for decoded in self.decoder.decode(chunk):
                    self._account(decoded)
                    yield decoded
        except zlib.error as error:
            failure = "connection"
            detail = (
                f"the reply's {self.decoder.coding} body cannot be decoded after {self.size} bytes: {error}"
            )
        except ReadTimeoutError as error:
            failure, detail = "timeout", describe(error, self.request)
        except (HTTPError, requests.RequestException, OSError) as error:
            failure = "connection"
            detail = (
                f"the transfer was cut after {self.size} bytes (incomplete): {describe(error, self.request)}"
            )
        raise media_api.media_failure(self.request, failure, detail) from None

    def _reader(self) -> Callable[[], bytes]:
        """Reads the next piece of the body as sent (the content coding is undone by :attr:`decoder`)."""
        raw = self.response.raw
        if callable(getattr(raw, "read1", None)):  # urllib3 >= 2.3: what arrived, without waiting
            return lambda: bytes(raw.read1(CHUNK_SIZE, decode_content=False))
        pieces = raw.stream(CHUNK_SIZE, decode_content=False)  # older urllib3: a trickle is seen per chunk
        return lambda: next(pieces, b"")

    def _account(self, chunk: bytes) -> None:
        self.size += len(chunk)
        self.digest.update(chunk)
        if len(self.head) < media_length.HEAD_BYTES:
            self.head = (self.head + chunk)[: media_length.HEAD_BYTES]

    def _stalled(self, received: int, reading: float) -> str:
        return (
            f"the transfer stalled: {received} bytes in the last {reading:.1f} s of reading, after "
            f"{self.size} bytes (at least {MIN_TRANSFER_RATE} bytes/s are expected)"
        )


def describe(error: BaseException, request: media_api.MediaRequest) -> str:
    """The transport failure in a few words, the link cut out *before* shortening (no partial link left)."""
    text = " ".join(media_api.redact_link(str(error), *request.links).split())
    return f"{type(error).__name__}: {text[:200]}" if text else type(error).__name__
