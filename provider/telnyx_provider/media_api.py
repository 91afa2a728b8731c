"""Recording media links: the one place that builds a media GET and reads its failures.

Pure: no I/O. A media link (``media_url``) is a short-lived bearer capability to personal data: the request
carries no ``Authorization`` header unless the link points at the API's own origin, and no message ever
quotes the link.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from telnyx_provider.api import USER_AGENT, ApiRequest, error_from_reply, no_reply
from telnyx_provider.errors import TelnyxApiError

if TYPE_CHECKING:
    from collections.abc import Mapping

#: File extensions of the media types a recording may come in; others fall back to the link's own.
MEDIA_EXTENSIONS = {
    "audio/wav": "wav",
    "audio/x-wav": "wav",
    "audio/wave": "wav",
    "audio/vnd.wave": "wav",
    "audio/mpeg": "mp3",
    "audio/mp3": "mp3",
    "audio/ogg": "ogg",
    "audio/flac": "flac",
    "audio/mp4": "m4a",
    "audio/webm": "webm",
}
_DEFAULT_PORTS = {"http": 80, "https": 443}
_EXTENSION_RE = re.compile(r"[a-z0-9]{1,5}")


@dataclass(frozen=True)
class MediaRequest:
    """The GET of a recording's audio.

    The link is a bearer capability to personal data: it is kept out of ``repr`` and must never reach a
    log line or a message; :attr:`host` and :attr:`recording_sid` are what may be shown.

    :param url: the media link (``media_url`` of the recording).
    :param recording_sid: the recording, for messages.
    :param host: the link's host, for messages.
    :param headers: the headers to send (``Authorization`` only towards the API's own origin).
    """

    url: str = field(repr=False)
    recording_sid: str
    host: str
    headers: dict[str, str] = field(repr=False)

    def describe(self) -> ApiRequest:
        """This request as an :class:`ApiRequest` for errors: names the recording and host, not the link."""
        return ApiRequest("GET", f"<media of recording {self.recording_sid} on {self.host}>", "get_media")


def media_request(recording_sid: str, media_url: object, *, base_url: str, api_key: str) -> MediaRequest:
    """Build the GET of a recording's media: the one place that decides its headers.

    The API key goes only to the API's own origin (same scheme, host and port as ``base_url``); a
    pre-signed link on a storage host gets no ``Authorization`` header (S3 would refuse two
    credentials, and the key has no business there).

    :raises TelnyxApiError: the recording has no usable http(s) media link.
    """
    parts = urlsplit(media_url) if isinstance(media_url, str) else None
    try:
        host = parts.hostname if parts is not None else None
        port = parts.port if parts is not None else None  # raises ValueError on a bad port
    except ValueError:
        host = port = None
    if parts is None or parts.scheme not in _DEFAULT_PORTS or not host:
        raise TelnyxApiError(
            status=None,
            method="GET",
            path=f"<media of recording {recording_sid}>",
            detail="the recording has no http(s) media_url to download"
            + ("" if media_url is None else " (the value is not shown: links are capabilities)"),
        )
    assert isinstance(media_url, str)
    headers = {"Accept": "audio/*, */*;q=0.1", "User-Agent": USER_AGENT}
    if same_origin(media_url, base_url):
        headers["Authorization"] = f"Bearer {api_key}"
    shown = host if port is None else f"{host}:{port}"
    return MediaRequest(url=media_url, recording_sid=recording_sid, host=shown, headers=headers)


def same_origin(url: str, other: str) -> bool:
    """Whether two URLs share scheme, host (case-insensitive) and port (default ports made explicit)."""
    try:
        first, second = urlsplit(url), urlsplit(other)
        return (
            first.scheme.lower() == second.scheme.lower()
            and (first.hostname or "") == (second.hostname or "")
            and (first.port or _DEFAULT_PORTS.get(first.scheme.lower()))
            == (second.port or _DEFAULT_PORTS.get(second.scheme.lower()))
        )
    except ValueError:
        return False


def media_extension(content_type: str | None, media_url: str) -> str:
    """The file extension of the media: from its ``Content-Type``, else from the link's path, else ``bin``."""
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    if kind in MEDIA_EXTENSIONS:
        return MEDIA_EXTENSIONS[kind]
    name = urlsplit(media_url).path.rsplit("/", 1)[-1]
    suffix = name.rpartition(".")[2].lower()
    return suffix if "." in name and _EXTENSION_RE.fullmatch(suffix) else "bin"


def media_error(
    request: MediaRequest, status: int, headers: Mapping[str, str], body: bytes
) -> TelnyxApiError:
    """The error of a refused media GET: status and Telnyx's code/detail, never the link (nor its query)."""
    error = error_from_reply(request.describe(), status, headers, body)
    expired = status in (403, 404)
    return TelnyxApiError(
        status=status,
        method=error.method,
        path=error.path,
        code=error.code,
        title=None if error.title is None else redact_link(error.title, request.url),
        detail=None if error.detail is None else redact_link(error.detail, request.url),
        hint="The media link expired or was refused even after fetching the recording again; links are "
        "short-lived (treat them as valid for 10 minutes)."
        if expired
        else None,
        headers=error.headers,
    )


def media_failure(request: MediaRequest, failure: str, detail: str) -> TelnyxApiError:
    """The error of a media GET that got no (complete) reply; the transport's text is cleared of the link."""
    return no_reply(request.describe(), failure, redact_link(detail, request.url))


def redact_link(text: str, url: str) -> str:
    """``text`` with the link, its path and query, and any long query value replaced by ``***``."""
    parts = urlsplit(url)
    pieces = [url, parts.path + ("?" + parts.query if parts.query else ""), parts.query]
    pieces += [value for values in parse_qs(parts.query).values() for value in values if len(value) >= 8]
    for piece in sorted((piece for piece in pieces if piece), key=len, reverse=True):
        text = text.replace(piece, "***")
    return text
