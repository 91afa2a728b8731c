"""``GET /media/{sid}.wav?Expires=&Signature=``: pre-signed-looking media links, their refusals and faults.

Media need no ``Authorization`` header (like an S3 pre-signed URL); refusals answer with S3's XML error body.
Faults: a transfer cut midway (full ``Content-Length``, half the bytes, then the connection closed), or a link
refused once with 403 or 404; scripted with :meth:`MediaFaults.inject` or drawn at ``cut_rate``.
"""

from __future__ import annotations

import random
import re
import secrets
import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote
from xml.sax.saxutils import escape

from telnyx_provider.sandbox.api import Reply, decode_form
from telnyx_provider.sandbox.media import wav_bytes

if TYPE_CHECKING:
    from telnyx_provider.sandbox.stats import Stats
    from telnyx_provider.sandbox.store import RecordingStore

MEDIA_FAULT_KINDS = ("cut", "403", "404")
_MEDIA = re.compile(r"/media/([^/]+)\.wav")


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
        self._scripted: list[list[Any]] = []  # [kind, remaining]

    def inject(self, kind: str, count: int = 1) -> None:
        """Give the next ``count`` media requests that fault (``cut`` hits transfers, not refusals or HEADs).

        :param kind: ``cut``, ``403`` or ``404``.
        :param count: how many requests (>= 1).
        :raises ValueError: for an unknown kind or a count below 1.
        """
        if kind not in MEDIA_FAULT_KINDS:
            raise ValueError(f"Unknown media fault {kind!r}; choose among {', '.join(MEDIA_FAULT_KINDS)}")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"count must be an integer >= 1, got {count!r}")
        with self._lock:
            self._scripted.append([kind, count])

    def pending(self) -> list[dict[str, Any]]:
        """Return the scripted media faults not used up yet."""
        with self._lock:
            return [{"kind": kind, "count": count} for kind, count in self._scripted]

    def take(self, kinds: tuple[str, ...]) -> str | None:
        """Use up one scripted fault among ``kinds`` (the oldest), if any.

        :param kinds: the kinds that apply to this request.
        """
        with self._lock:
            for index, entry in enumerate(self._scripted):
                if entry[0] in kinds:
                    entry[1] -= 1
                    if entry[1] <= 0:
                        del self._scripted[index]
                    return str(entry[0])
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
    """

    def __init__(self, store: RecordingStore, faults: MediaFaults, stats: Stats, seconds_cap: int) -> None:
        if seconds_cap < 1:
            raise ValueError(f"media_seconds_cap must be >= 1, got {seconds_cap}")
        self.store = store
        self.faults = faults
        self.stats = stats
        self.seconds_cap = seconds_cap

    def serve(self, method: str, path: str, query: str, authorization: str | None) -> tuple[Reply, bool]:
        """Answer one media request.

        :param method: ``GET`` or ``HEAD`` (others: 405).
        :param path: the request path.
        :param query: the raw query string (``Expires`` and ``Signature``).
        :param authorization: the ``Authorization`` header, only counted (media need none).
        :return: the reply, and whether to cut its body midway.
        """
        self.stats.media_request(authorization is not None)
        match = _MEDIA.fullmatch(path)
        if match is None:
            return s3_error(404, "NoSuchKey", "The specified key does not exist."), False
        if method not in ("GET", "HEAD"):
            return s3_error(405, "MethodNotAllowed", f"{method} is not allowed on media"), False
        refused = self.faults.take(("403", "404"))
        if refused is not None:
            self.stats.media_fault(refused)
            if refused == "403":
                return s3_error(403, "AccessDenied", "Access Denied"), False
            return s3_error(404, "NoSuchKey", "The specified key does not exist."), False
        recording_sid = unquote(match.group(1))
        refusal = self.store.media_links.refusal(recording_sid, decode_form(query), self.store.service_now())
        if refusal is not None:
            return s3_error(403, *refusal), False
        audio = self.store.media(recording_sid)
        if audio is None:
            return s3_error(404, "NoSuchKey", "The specified key does not exist."), False
        reply = Reply(200, wav_bytes(*audio, cap=self.seconds_cap), content_type="audio/wav")
        cut = method == "GET" and self.faults.cut_now()
        if cut:
            self.stats.media_fault("cut")
        return reply, cut
