"""``GET /media/{sid}.wav?Expires=&Signature=``: pre-signed-looking media links, their refusals and faults.

Media need no ``Authorization`` header (like an S3 pre-signed URL); refusals answer with S3's XML error body.
Faults: a transfer cut midway (half the bytes, then the connection closed), a link refused once with 403 or
404, or redirected once to a given ``Location`` (sent as given: a test may aim it anywhere); scripted with
:meth:`MediaFaults.inject` or, for cuts, drawn at ``cut_rate``.

How a body is delimited (``MEDIA_FRAMINGS``): ``length`` (``Content-Length``), ``chunked``, or ``close``
(HTTP/1.0 style: no length at all, the body ends when the connection closes, so a cut looks like an end).
Media may also be sent slowly (``bytes_per_second``), to interrupt a client mid-transfer.
"""

from __future__ import annotations

import random
import re
import secrets
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote
from xml.sax.saxutils import escape

from telnyx_provider.sandbox.api import Reply, decode_form
from telnyx_provider.sandbox.media import mp3_bytes, wav_bytes

if TYPE_CHECKING:
    from telnyx_provider.sandbox.stats import Stats
    from telnyx_provider.sandbox.store import RecordingStore

MEDIA_FAULT_KINDS = ("cut", "403", "404", "redirect")
MEDIA_FRAMINGS = ("length", "chunked", "close")
MEDIA_FORMATS = {"wav": "audio/wav", "mp3": "audio/mpeg"}
_MEDIA = re.compile(r"/media/([^/]+)\.(wav|mp3)")


@dataclass(frozen=True)
class Transfer:
    """How a reply's body goes out.

    :param framing: one of ``MEDIA_FRAMINGS``.
    :param cut: stop halfway through the body and close the connection.
    :param bytes_per_second: send no faster than this (None: at once).
    """

    framing: str = "length"
    cut: bool = False
    bytes_per_second: float | None = None


def check_delivery(framing: str, audio_format: str, bytes_per_second: float | None) -> None:
    """Refuse a framing, format or rate the sandbox cannot serve.

    :raises ValueError: naming the bad value.
    """
    if framing not in MEDIA_FRAMINGS:
        raise ValueError(f"media framing must be one of {', '.join(MEDIA_FRAMINGS)}, got {framing!r}")
    if audio_format not in MEDIA_FORMATS:
        raise ValueError(f"media format must be one of {', '.join(MEDIA_FORMATS)}, got {audio_format!r}")
    if bytes_per_second is not None and not (
        isinstance(bytes_per_second, int | float) and 0 < bytes_per_second < float("inf")
    ):
        raise ValueError(f"media bytes_per_second must be a positive number, got {bytes_per_second!r}")


def s3_error(status: int, code: str, message: str) -> Reply:
    """Return an S3-shaped XML error reply.

    :param status: HTTP status.
    :param code: S3 error code, e.g. ``AccessDenied``.
    :param message: S3 error message.
    """
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
        f"<RequestId>{secrets.token_hex(8).upper()}</RequestId></Error>"
    )
    return Reply(status, body.encode(), content_type="application/xml")


class MediaFaults:
    """Scripted and random media faults.

    :param cut_rate: fraction of media transfers cut midway.
    :param seed: seed of the random draw.
    """

    def __init__(self, cut_rate: float = 0.0, seed: int | None = None) -> None:
        if not 0.0 <= cut_rate <= 1.0:
            raise ValueError(f"media_cut_rate must be between 0 and 1, got {cut_rate}")
        self.cut_rate = cut_rate
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._scripted: list[list[Any]] = []  # [kind, remaining, location]

    def inject(self, kind: str, count: int = 1, location: str | None = None) -> None:
        """Give the next ``count`` media requests that fault (``cut`` hits transfers, not refusals or HEADs;
        ``redirect`` hits requests for a valid link).

        :param kind: ``cut``, ``403``, ``404`` or ``redirect``.
        :param count: how many requests (>= 1).
        :param location: the ``Location`` of a ``redirect`` (required for it, sent exactly as given).
        :raises ValueError: for an unknown kind, a count below 1, or a missing or needless location.
        """
        if kind not in MEDIA_FAULT_KINDS:
            raise ValueError(f"Unknown media fault {kind!r}; choose among {', '.join(MEDIA_FAULT_KINDS)}")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"count must be an integer >= 1, got {count!r}")
        if (kind == "redirect") != isinstance(location, str):
            raise ValueError("a redirect needs a location (a string), and only a redirect takes one")
        with self._lock:
            self._scripted.append([kind, count, location])

    def pending(self) -> list[dict[str, Any]]:
        """Return the scripted media faults not used up yet."""
        with self._lock:
            return [
                {"kind": kind, "count": count, **({"location": location} if location is not None else {})}
                for kind, count, location in self._scripted
            ]

    def take(self, kinds: tuple[str, ...]) -> str | None:
        """Use up one scripted fault among ``kinds`` (the oldest), if any.

        :param kinds: the kinds that apply to this request.
        :return: the fault's kind, or for a redirect its location.
        """
        with self._lock:
            for index, entry in enumerate(self._scripted):
                if entry[0] in kinds:
                    entry[1] -= 1
                    if entry[1] <= 0:
                        del self._scripted[index]
                    return str(entry[2] if entry[0] == "redirect" else entry[0])
            return None

    def cut_now(self) -> bool:
        """Decide whether this transfer is cut: a scripted ``cut`` first, else the random draw."""
        if self.take(("cut",)) is not None:
            return True
        with self._lock:
            return self.cut_rate > 0.0 and self._random.random() < self.cut_rate


class MediaRoute:
    """Answers media requests from the store.

    :param store: the recordings and their link signer.
    :param faults: media faults.
    :param stats: counters (requests, requests carrying ``Authorization``, faults).
    :param seconds_cap: the longest media served, in seconds.
    :param framing: how bodies are delimited, one of ``MEDIA_FRAMINGS``.
    :param bytes_per_second: send media no faster than this (None: at once).
    """

    def __init__(
        self,
        store: RecordingStore,
        faults: MediaFaults,
        stats: Stats,
        seconds_cap: int,
        framing: str = "length",
        bytes_per_second: float | None = None,
    ) -> None:
        if seconds_cap < 1:
            raise ValueError(f"media_seconds_cap must be >= 1, got {seconds_cap}")
        check_delivery(framing, "wav", bytes_per_second)
        self.store = store
        self.faults = faults
        self.stats = stats
        self.seconds_cap = seconds_cap
        self.framing = framing
        self.bytes_per_second = bytes_per_second

    def serve(self, method: str, path: str, query: str, authorization: str | None) -> tuple[Reply, Transfer]:
        """Answer one media request.

        :param method: ``GET`` or ``HEAD`` (others: 405).
        :param path: the request path.
        :param query: the raw query string (``Expires`` and ``Signature``).
        :param authorization: the ``Authorization`` header, only counted (media need none).
        :return: the reply, and how to send its body.
        """
        self.stats.media_request(authorization is not None)
        match = _MEDIA.fullmatch(path)
        if match is None:
            return s3_error(404, "NoSuchKey", "The specified key does not exist."), Transfer()
        if method not in ("GET", "HEAD"):
            return s3_error(405, "MethodNotAllowed", f"{method} is not allowed on media"), Transfer()
        refused = self.faults.take(("403", "404"))
        if refused is not None:
            self.stats.media_fault(refused)
            if refused == "403":
                return s3_error(403, "AccessDenied", "Access Denied"), Transfer()
            return s3_error(404, "NoSuchKey", "The specified key does not exist."), Transfer()
        recording_sid, extension = unquote(match.group(1)), match.group(2)
        links, now = self.store.media_links, self.store.service_now()
        refusal = links.refusal(recording_sid, decode_form(query), now, extension)
        if refusal is not None:
            return s3_error(403, *refusal), Transfer()
        audio = self.store.media(recording_sid)
        if audio is None:
            return s3_error(404, "NoSuchKey", "The specified key does not exist."), Transfer()
        location = self.faults.take(("redirect",))
        if location is not None:
            self.stats.media_fault("redirect")
            return Reply(302, b"", headers={"Location": location}, content_type="text/plain"), Transfer()
        seconds, channels = audio
        if extension == "mp3":
            reply = Reply(200, mp3_bytes(seconds, cap=self.seconds_cap), content_type=MEDIA_FORMATS["mp3"])
        else:
            reply = Reply(200, wav_bytes(seconds, channels, cap=self.seconds_cap), content_type="audio/wav")
        cut = method == "GET" and self.faults.cut_now()
        if cut:
            self.stats.media_fault("cut")
        return reply, Transfer(self.framing, cut, self.bytes_per_second)
