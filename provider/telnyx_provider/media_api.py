"""Recording media links: the one place that builds a media GET, decides where the API key may go, and reads
its failures.

Pure: no I/O. A media link (``media_url``) is a short-lived bearer capability to personal data: the request
carries no ``Authorization`` header unless the link points at the API's own origin (as urllib3, which
connects, reads it), links that parsers could read two ways are refused, and no message ever quotes a link.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urljoin, urlsplit

from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

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
#: How an error of a media GET names its request (never the link).
MEDIA_PATH_PREFIX = "<media of recording "
_EXTENSION_RE = re.compile(r"[a-z0-9]{1,5}")
#: Printable ASCII without space: what a link may contain (anything else is percent-encoded in a real one).
_PRINTABLE_ASCII = re.compile(r"[\x21-\x7e]+")
_HOST = re.compile(r"[a-z0-9_](?:[a-z0-9_.-]*[a-z0-9_.])?")
#: Refusals that mean "no usable link" rather than "an unsafe one".
_NOT_A_LINK = ("it is not a URL", "it is not an http(s) link", "it has no host")
MAX_LINK_LENGTH = 16384
#: Query values shorter than this are not cut out of messages on their own (the whole query always is).
_SHORTEST_REDACTED = 8


@dataclass(frozen=True)
class Origin:
    """Where a request goes: scheme, host (lower case; an IPv6 literal without brackets) and port.

    Two URLs may share the API key only if their origins are equal: no case-folding beyond the host's, no
    default-port leniency beyond making the scheme's default explicit, no trailing-dot equivalence.
    """

    scheme: str
    host: str
    port: int


class LinkRefused(ValueError):
    """A media link or redirect target the provider will not follow; the reason never quotes the link."""


def link_origin(url: object) -> Origin:
    """The origin a media link or redirect target connects to, read as the HTTP library reads it.

    ``urllib.parse`` and urllib3 (which ``requests`` uses to connect) disagree on some links:
    ``http://other.host\\@api.host/`` is ``api.host`` to the first and ``other.host`` to the second. So a link
    is refused outright when it has a backslash, whitespace, a control or non-ASCII character, a user or
    password part, a scheme other than http(s), a host with unexpected characters, or when the two parsers
    read its scheme, host or port differently.

    :param url: the link.
    :raises LinkRefused: the link may not be followed (the reason says why, without the link).
    """
    if not isinstance(url, str) or not url:
        raise LinkRefused("it is not a URL")
    if len(url) > MAX_LINK_LENGTH:
        raise LinkRefused(f"it is longer than {MAX_LINK_LENGTH} characters")
    if "\\" in url:
        raise LinkRefused("it contains a backslash")
    if not _PRINTABLE_ASCII.fullmatch(url):
        raise LinkRefused("it contains whitespace, a control character or a non-ASCII character")
    try:
        split = urlsplit(url)
        scheme = split.scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            raise LinkRefused("it is not an http(s) link")
        parsed = parse_url(url)
        split_port = split.port
    except (LocationParseError, ValueError) as error:
        if isinstance(error, LinkRefused):
            raise
        raise LinkRefused("its host or port cannot be read") from None
    if "@" in split.netloc or parsed.auth is not None:
        raise LinkRefused("it has a user or password part")
    host = split.hostname or ""
    if not host:
        raise LinkRefused("it has no host")
    if not _valid_host(host):
        raise LinkRefused("its host has unexpected characters")
    read_by_urllib3 = ((parsed.scheme or "").lower(), (parsed.host or "").strip("[]").lower(), parsed.port)
    if read_by_urllib3 != (scheme, host, split_port):
        raise LinkRefused("URL parsers read its host differently")
    return Origin(scheme, host, split_port or _DEFAULT_PORTS[scheme])


def _valid_host(host: str) -> bool:
    if ":" in host:  # an IPv6 literal (urlsplit has dropped its brackets); no zone id
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return False
        return True
    return _HOST.fullmatch(host) is not None


@dataclass(frozen=True)
class MediaRequest:
    """The GET of a recording's audio (one hop of it, when the media is redirected).

    The link is a bearer capability to personal data: it is kept out of ``repr`` and must never reach a
    log line or a message; ``host`` and ``recording_sid`` are what may be shown.

    :param url: the media link (``media_url`` of the recording, or a redirect's target).
    :param recording_sid: the recording, for messages.
    :param host: the link's host, for messages.
    :param headers: the headers to send (``Authorization`` only towards the API's own origin).
    :param origin: where the request goes, as the HTTP library reads the link.
    :param sent_url: the link as the HTTP library prepared and sent it (it re-encodes some characters, and
        its errors quote that form); redacted from messages like ``url``.
    """

    url: str = field(repr=False)
    recording_sid: str
    host: str
    headers: dict[str, str] = field(repr=False)
    origin: Origin | None = None
    sent_url: str | None = field(default=None, repr=False)

    @property
    def links(self) -> tuple[str, ...]:
        """The forms of the link that must never show: as handed out, and as sent."""
        return (self.url,) if self.sent_url is None else (self.url, self.sent_url)

    @property
    def carries_key(self) -> bool:
        """Whether this request carries the API key."""
        return "Authorization" in self.headers

    def describe(self) -> ApiRequest:
        """This request as an :class:`~telnyx_provider.api.ApiRequest` for errors.

        It names the recording and host, not the link.
        """
        return ApiRequest("GET", f"{MEDIA_PATH_PREFIX}{self.recording_sid} on {self.host}>", "get_media")


def media_request(
    recording_sid: str, media_url: object, *, base_url: str, api_key: str, key_allowed: bool = True
) -> MediaRequest:
    """Build the GET of a recording's media: the one place that decides its headers.

    The API key goes only to the API's own origin (same scheme, host and port as ``base_url``, as the HTTP
    library reads both); a pre-signed link on a storage host gets no ``Authorization`` header (S3 would
    refuse two credentials, and the key has no business there). A link the provider may not follow (see
    :func:`link_origin`) is refused before any request.

    :param recording_sid: the recording, for messages.
    :param media_url: the link.
    :param base_url: the API's base URL (its origin is the only one that may receive the key).
    :param api_key: the API key.
    :param key_allowed: ``False`` never sends the key (a redirect chain that has left the API's origin).
    :raises TelnyxApiError: the recording has no usable http(s) media link, or the link is refused
        (``failure="refused"``, not retried).
    """
    path = f"{MEDIA_PATH_PREFIX}{recording_sid}>"
    try:
        origin = link_origin(media_url)
    except LinkRefused as refusal:
        if not isinstance(media_url, str) or not media_url or str(refusal) in _NOT_A_LINK:
            raise TelnyxApiError(
                status=None,
                method="GET",
                path=path,
                detail="the recording has no http(s) media_url to download"
                + ("" if media_url is None else " (the value is not shown: links are capabilities)"),
                failure="refused",  # asking again gives the same link
            ) from None
        raise refused(recording_sid, f"the media link was refused before any request: {refusal}") from None
    assert isinstance(media_url, str)
    # identity: Content-Length then counts the audio itself (a gzip reply is decoded and its end proven).
    headers = {"Accept": "audio/*, */*;q=0.1", "Accept-Encoding": "identity", "User-Agent": USER_AGENT}
    if key_allowed and origin == api_origin(base_url):
        headers["Authorization"] = f"Bearer {api_key}"
    host = f"[{origin.host}]" if ":" in origin.host else origin.host
    shown = host if origin.port == _DEFAULT_PORTS[origin.scheme] else f"{host}:{origin.port}"
    return MediaRequest(
        url=media_url, recording_sid=recording_sid, host=shown, headers=headers, origin=origin
    )


def redirect_request(previous: MediaRequest, location: str, *, base_url: str, api_key: str) -> MediaRequest:
    """The next hop of a redirected media GET, its headers decided again.

    ``location`` is checked as received (``urljoin`` would silently drop a tab or newline) and resolved
    against the link that answered. The key is sent only while the chain stays on the API's origin: once a
    hop left it, no later hop carries the key, even one that comes back.

    :param previous: the request that was redirected.
    :param location: its reply's ``Location`` header, raw.
    :raises TelnyxApiError: the target is refused (``failure="refused"``, not retried).
    """
    try:
        if "\\" in location or not _PRINTABLE_ASCII.fullmatch(location):
            raise LinkRefused("its Location has a backslash, whitespace, a control or non-ASCII character")
        target = urljoin(previous.url, location)
        link_origin(target)
    except LinkRefused as refusal:
        raise refused(
            previous.recording_sid, f"a redirect from {previous.host} was refused: {refusal}"
        ) from None
    return media_request(
        previous.recording_sid, target, base_url=base_url, api_key=api_key, key_allowed=previous.carries_key
    )


def check_prepared(request: MediaRequest, prepared_url: str | None) -> None:
    """Refuse to send ``request`` unless the HTTP library prepared it for the origin its headers were
    decided for (the library re-encodes the link; the decision must hold for what it connects to).

    :param request: the request whose headers were decided.
    :param prepared_url: the URL of the library's prepared request.
    :raises TelnyxApiError: the prepared URL goes elsewhere (``failure="refused"``).
    """
    try:
        same = link_origin(prepared_url) == request.origin
    except LinkRefused:
        same = False
    if not same:
        raise refused(
            request.recording_sid,
            f"the media link to {request.host} was refused: the HTTP library would connect elsewhere",
        )


def refused(recording_sid: str, detail: str) -> TelnyxApiError:
    """The error of a media GET the provider refused to send (not retried; the link is never quoted)."""
    return TelnyxApiError(
        status=None,
        method="GET",
        path=f"{MEDIA_PATH_PREFIX}{recording_sid}>",
        detail=detail,
        failure="refused",
        hint="Media links and their redirects must be plain http(s) URLs; the API key only ever goes to the "
        "API's own origin.",
    )


@lru_cache(maxsize=16)
def api_origin(base_url: str) -> Origin | None:
    """The API's own origin (the only one that may receive the key); ``None`` if the base URL has none."""
    try:
        return link_origin(base_url)
    except LinkRefused:
        return None


def same_origin(url: str, other: str) -> bool:
    """Whether two URLs share scheme, host (case-insensitive) and port, as the HTTP library reads them
    (a URL :func:`link_origin` refuses shares no origin)."""
    try:
        return link_origin(url) == link_origin(other)
    except LinkRefused:
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
        title=None if error.title is None else redact_link(error.title, *request.links),
        detail=None if error.detail is None else redact_link(error.detail, *request.links),
        hint="The media link expired or was refused even after fetching the recording again; links are "
        "short-lived (treat them as valid for 10 minutes)."
        if expired
        else None,
        headers=error.headers,
    )


def media_failure(request: MediaRequest, failure: str, detail: str) -> TelnyxApiError:
    """The error of a media GET that got no (complete) reply; the transport's text is cleared of the link."""
    return no_reply(request.describe(), failure, redact_link(detail, *request.links))


def redact_link(text: str, *urls: str) -> str:
    """``text`` with each link, its path and query, and any long query value replaced by ``***``.

    Query values are cut out both as written in the link (percent-encoded: an error body echoing the
    request, such as S3's canonical request, quotes them so) and decoded.
    """
    pieces: set[str] = set()
    for url in urls:
        parts = urlsplit(url)
        pieces |= {url, parts.path + ("?" + parts.query if parts.query else ""), parts.query}
        values = [pair.partition("=")[2] for pair in parts.query.split("&")]
        values += [value for found in parse_qs(parts.query).values() for value in found]
        pieces |= {value for value in values if len(value) >= _SHORTEST_REDACTED}
    for piece in sorted(pieces - {""}, key=len, reverse=True):
        text = text.replace(piece, "***")
    return text


def is_media_failure(error: BaseException) -> bool:
    """Whether an error is a media GET's (a refused or cut link), not the API's: a media link's 404 says the
    link expired or was refused, never that the recording was deleted."""
    return isinstance(error, TelnyxApiError) and error.path.startswith(MEDIA_PATH_PREFIX)
