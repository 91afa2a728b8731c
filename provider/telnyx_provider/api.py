"""The one place that knows the TeXML recording endpoints: how requests are built and replies read.

Pure: no I/O. The sync hook (requests) and the async client (aiohttp) only move the bytes that
:class:`ApiRequest` describes and hand the reply back to :func:`parse_reply`, so both paths share the
same paths, headers, error parsing and recording model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import pendulum

from telnyx_provider import __version__
from telnyx_provider.errors import TLS_HINT, TelnyxApiError, TelnyxValidationError
from telnyx_provider.models import normalize_recording
from telnyx_provider.params import (
    UPDATE_STATUSES,
    StartRecordingParams,
    format_date_filter,
    require_choice,
    require_identifier,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from datetime import date

T = TypeVar("T")

USER_AGENT = f"airflow-provider-telnyx/{__version__}"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
#: Reply headers kept on errors, for the retry policy.
RETRY_HEADERS = ("retry-after", "x-ratelimit-reset", "x-ratelimit-limit", "x-ratelimit-remaining")
_BODY_PREVIEW = 200
#: The query key of ``DateCreated>=...`` (the spec's "inequality operators", Twilio's convention).
DATE_CREATED_AFTER_KEY = "DateCreated>"
#: The query key of ``DateCreated<=...`` (the other inequality; the service includes the bound).
DATE_CREATED_BEFORE_KEY = "DateCreated<"

_HINTS = {
    401: "Check the API key stored as the password of the Telnyx connection.",
    403: "The API key is not allowed to do this; check its permissions in the Telnyx portal.",
}
_START_NOT_FOUND_HINT = (
    "The call was not found or is not live (recordings can only start on an active call). "
    "Note that account_sid must be your Telnyx organization id (the TeXML account SID), not a call "
    "or connection id."
)


@dataclass(frozen=True)
class ApiRequest:
    """An HTTP request to the Telnyx API, relative to the connection's base URL.

    :param method: HTTP method.
    :param path: percent-encoded path below the base URL, starting with ``/``.
    :param operation: the API operation, for messages (``start_call_recording``...).
    :param form: form-encoded body fields, if any.
    :param query: query-string parameters, if any.
    :param idempotent: repeating the request cannot create a second resource.
    """

    method: str
    path: str
    operation: str
    form: dict[str, str] | None = None
    query: dict[str, str] = field(default_factory=dict)
    idempotent: bool = True

    def body(self) -> bytes | None:
        """The form-encoded body (empty for a form with no fields), or ``None`` for a request without one."""
        return None if self.form is None else urlencode(self.form).encode("ascii")

    def headers(self, api_key: str) -> dict[str, str]:
        """Every header of this request: authentication, content negotiation and, with a body, its type."""
        headers = build_headers(api_key)
        if self.form is not None:
            headers["Content-Type"] = FORM_CONTENT_TYPE
        return headers


def build_headers(api_key: str) -> dict[str, str]:
    """Headers sent on every API request."""
    return {
        "Authorization": f"Bearer {api_key}",
        "Accept": "application/json",
        "User-Agent": USER_AGENT,
    }


def _segment(argument: str, value: object) -> str:
    """Validate an identifier and percent-encode it as one path segment (``v3:abc`` -> ``v3%3Aabc``)."""
    return quote(require_identifier(argument, value), safe="")


def _account(account_sid: object) -> str:
    return f"/texml/Accounts/{_segment('account_sid', account_sid)}"


def start_call_recording(account_sid: str, call_sid: str, params: StartRecordingParams) -> ApiRequest:
    """``POST /texml/Accounts/{account_sid}/Calls/{call_sid}/Recordings.json``."""
    path = f"{_account(account_sid)}/Calls/{_segment('call_sid', call_sid)}/Recordings.json"
    return ApiRequest("POST", path, "start_call_recording", form=params.to_form(), idempotent=False)


def list_call_recordings(
    account_sid: str, call_sid: str, *, page: int | None = None, page_size: int | None = None
) -> ApiRequest:
    """``GET /texml/Accounts/{account_sid}/Calls/{call_sid}/Recordings.json`` (one page)."""
    path = f"{_account(account_sid)}/Calls/{_segment('call_sid', call_sid)}/Recordings.json"
    return ApiRequest("GET", path, "list_call_recordings", query=_paging(page, page_size))


def update_call_recording(account_sid: str, call_sid: str, recording_sid: str, status: str) -> ApiRequest:
    """``POST .../Calls/{call_sid}/Recordings/{recording_sid}.json`` with ``Status`` (pause, resume, stop)."""
    require_choice("status", status, UPDATE_STATUSES)
    path = (
        f"{_account(account_sid)}/Calls/{_segment('call_sid', call_sid)}"
        f"/Recordings/{_segment('recording_sid', recording_sid)}.json"
    )
    # Setting a status twice leaves the recording in that status: safe to repeat.
    return ApiRequest("POST", path, "update_call_recording", form={"Status": status})


def get_recording(account_sid: str, recording_sid: str) -> ApiRequest:
    """``GET /texml/Accounts/{account_sid}/Recordings/{recording_sid}.json``."""
    path = f"{_account(account_sid)}/Recordings/{_segment('recording_sid', recording_sid)}.json"
    return ApiRequest("GET", path, "get_recording")


def delete_recording(account_sid: str, recording_sid: str) -> ApiRequest:
    """``DELETE /texml/Accounts/{account_sid}/Recordings/{recording_sid}.json``."""
    path = f"{_account(account_sid)}/Recordings/{_segment('recording_sid', recording_sid)}.json"
    return ApiRequest("DELETE", path, "delete_recording")


def list_recordings(
    account_sid: str,
    *,
    page: int | None = None,
    page_size: int | None = None,
    date_created_after: datetime | date | str | None = None,
    date_created_before: datetime | date | str | None = None,
) -> ApiRequest:
    """``GET /texml/Accounts/{account_sid}/Recordings.json`` (one page).

    :param date_created_after: only recordings created at or after this moment, sent as the spec's
        ``DateCreated`` filter with its ``>=`` operator (``DateCreated>=2023-05-22T00:00:00Z``).
    :param date_created_before: only recordings created up to this moment, sent with the ``<=`` operator
        (the service includes the bound: :func:`created_before` drops it again on our side).
    """
    query = _paging(page, page_size)
    if date_created_after is not None:
        # Twilio-style inequality: the query key is ``DateCreated>`` and ``=`` separates its value.
        query[DATE_CREATED_AFTER_KEY] = format_date_filter("date_created_after", date_created_after)
    if date_created_before is not None:
        query[DATE_CREATED_BEFORE_KEY] = format_date_filter("date_created_before", date_created_before)
    return ApiRequest("GET", f"{_account(account_sid)}/Recordings.json", "list_recordings", query=query)


def _paging(page: int | None, page_size: int | None) -> dict[str, str]:
    """The ``Page``/``PageSize`` query of a list request (zero-indexed page), validated."""
    _check_whole(page=(page, 0), page_size=(page_size, 1))
    given = (("Page", page), ("PageSize", page_size))
    return {name: str(value) for name, value in given if value is not None}


def _check_whole(**values: tuple[int | None, int]) -> None:
    for argument, (value, minimum) in values.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < minimum):
            raise TelnyxValidationError(argument, value, f"a whole number >= {minimum}")


def created_since(value: datetime | date | str) -> Callable[[Mapping[str, Any]], bool]:
    """The ``DateCreated>=`` filter on our side: whether a recording was created at or after ``value``.

    A date means its midnight UTC. The bound is exact (the filter sent is cut to the second: a superset);
    ``date_created`` has whole seconds, so a recording of the second holding a bound with a fraction
    belongs before it, on both sides of the bound alike. A recording whose ``date_created`` cannot be read
    is kept (the service applied the filter too).
    """
    bound = _exact_bound("date_created_after", value)

    def check(recording: Mapping[str, Any]) -> bool:
        moment = _moment(recording.get("date_created"))
        return moment is None or moment >= bound

    return check


def created_before(value: datetime | date | str) -> Callable[[Mapping[str, Any]], bool]:
    """The upper bound on our side: whether a recording was created strictly before ``value``.

    A date means its midnight UTC. The bound is exact, as in :func:`created_since` (the service's ``<=``
    filter, cut to the second, includes that whole second). A recording whose ``date_created`` cannot be
    read is kept (the service applied its ``<=`` filter).
    """
    bound = _exact_bound("date_created_before", value)

    def check(recording: Mapping[str, Any]) -> bool:
        moment = _moment(recording.get("date_created"))
        return moment is None or moment < bound

    return check


def _exact_bound(argument: str, value: object) -> pendulum.DateTime:
    """A ``DateCreated`` bound as given (checked as :func:`format_date_filter` checks it), not cut to the
    second."""
    formatted = format_date_filter(argument, value)
    moment = value if isinstance(value, datetime) else _moment(value if isinstance(value, str) else formatted)
    if isinstance(moment, datetime):
        return pendulum.instance(moment).in_timezone("UTC")
    day = _moment(formatted)
    assert day is not None
    return pendulum.instance(day).in_timezone("UTC")


def _moment(text: object) -> datetime | None:
    """An aware datetime (UTC when no zone is given) from ISO 8601 text, or ``None``."""
    if not isinstance(text, str):
        return None
    try:  # the standard library reads the dates of normalized replies; pendulum costs ~30 us a date
        parsed: object = datetime.fromisoformat(text)
    except ValueError:
        try:
            parsed = pendulum.parse(text, tz="UTC")
        except (ValueError, pendulum.parsing.exceptions.ParserError):
            return None
    if not isinstance(parsed, datetime):
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)


def list_transcriptions(
    account_sid: str, *, page_size: int | None = None, page_token: str | None = None
) -> ApiRequest:
    """``GET /texml/Accounts/{account_sid}/Transcriptions.json`` (one page; the next one by ``PageToken``)."""
    _check_whole(page_size=(page_size, 1))
    query: dict[str, str] = {}
    if page_token is not None:
        query["PageToken"] = require_identifier("page_token", page_token)
    if page_size is not None:
        query["PageSize"] = str(page_size)
    path = f"{_account(account_sid)}/Transcriptions.json"
    return ApiRequest("GET", path, "list_transcriptions", query=query)


def get_transcription(account_sid: str, transcription_sid: str) -> ApiRequest:
    """``GET /texml/Accounts/{account_sid}/Transcriptions/{recording_transcription_sid}.json``."""
    path = f"{_account(account_sid)}/Transcriptions/{_segment('transcription_sid', transcription_sid)}.json"
    return ApiRequest("GET", path, "get_transcription")


def delete_transcription(account_sid: str, transcription_sid: str) -> ApiRequest:
    """``DELETE /texml/Accounts/{account_sid}/Transcriptions/{recording_transcription_sid}.json``."""
    path = f"{_account(account_sid)}/Transcriptions/{_segment('transcription_sid', transcription_sid)}.json"
    return ApiRequest("DELETE", path, "delete_transcription")


def next_page_token(page: Mapping[str, Any]) -> str | None:
    """The ``PageToken`` of a list reply's ``next_page_uri``, or ``None`` on the last page."""
    uri = page.get("next_page_uri")
    if not isinstance(uri, str) or not uri:
        return None
    tokens = parse_qs(urlsplit(uri).query).get("PageToken")
    return tokens[0] if tokens and tokens[0] else None


def parse_reply(request: ApiRequest, status: int, headers: Mapping[str, str], body: bytes) -> Any:
    """Return the decoded JSON of a successful reply, or raise :exc:`~telnyx_provider.errors.TelnyxApiError`.

    Error replies are read for Telnyx's ``{"errors": [{"code", "title", "detail"}]}`` body; a body that is
    not JSON (an HTML page from a proxy, say, or JSON with ``NaN``/``Infinity``) is quoted by its first
    characters, never turned into a ``KeyError``. Redirects are not followed: a 3xx is an error naming
    where it points, as the base URL is then wrong.
    """
    if 300 <= status < 400:
        location = {name.lower(): value for name, value in headers.items()}.get("location")
        raise TelnyxApiError(
            status=status,
            method=request.method,
            path=request.path,
            detail=f"unexpected redirect to {location!r}" if location else "unexpected redirect",
            hint="Check the base URL (host) of the Telnyx connection; redirects are not followed.",
        )
    if status >= 400:
        raise error_from_reply(request, status, headers, body)
    if status == 204 or not body.strip():
        return None
    try:
        return _loads(body)
    except ValueError:
        raise TelnyxApiError(
            status=status,
            method=request.method,
            path=request.path,
            detail=f"the reply is not JSON: {_preview(body)}",
        ) from None


def parse_recording(
    request: ApiRequest, status: int, headers: Mapping[str, str], body: bytes
) -> dict[str, Any]:
    """Like :func:`parse_reply`, for replies that are one recording; returns the normalized recording."""
    return _parse_one("recording", request, status, headers, body)


def parse_recording_page(
    request: ApiRequest, status: int, headers: Mapping[str, str], body: bytes
) -> dict[str, Any]:
    """Like :func:`parse_reply`, for list replies; returns the page with its recordings normalized."""
    return _parse_page("recordings", request, status, headers, body)


def parse_transcription(
    request: ApiRequest, status: int, headers: Mapping[str, str], body: bytes
) -> dict[str, Any]:
    """Like :func:`parse_reply`, for one transcription (dates in ISO 8601, as for recordings)."""
    return _parse_one("transcription", request, status, headers, body)


def parse_transcription_page(
    request: ApiRequest, status: int, headers: Mapping[str, str], body: bytes
) -> dict[str, Any]:
    """Like :func:`parse_reply`, for transcription list replies; returns the page, its items normalized."""
    return _parse_page("transcriptions", request, status, headers, body)


def _parse_one(
    kind: str, request: ApiRequest, status: int, headers: Mapping[str, str], body: bytes
) -> dict[str, Any]:
    """One resource with a ``sid``; dates and duration normalized (transcriptions share those fields)."""
    payload = parse_reply(request, status, headers, body)
    if not isinstance(payload, dict) or not isinstance(payload.get("sid"), str):
        raise TelnyxApiError(
            status=status,
            method=request.method,
            path=request.path,
            detail=f"the reply is not a {kind} (no 'sid'): {_preview(body)}",
        )
    return normalize_recording(payload)


def _parse_page(
    key: str, request: ApiRequest, status: int, headers: Mapping[str, str], body: bytes
) -> dict[str, Any]:
    """A list page whose items are under ``key``; each item normalized."""
    payload = parse_reply(request, status, headers, body)
    items = payload.get(key) if isinstance(payload, dict) else None
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise TelnyxApiError(
            status=status,
            method=request.method,
            path=request.path,
            detail=f"the reply is not a list of {key}: {_preview(body)}",
        )
    return {**payload, key: [normalize_recording(item, copy=False) for item in items]}


def read_reply(
    parse: Callable[[ApiRequest, int, Mapping[str, str], bytes], T],
    request: ApiRequest,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    api_key: str,
) -> T:
    """``parse`` the reply; an error quoting the key (a proxy's page may echo our headers) is redacted."""
    try:
        return parse(request, status, headers, body)
    except TelnyxApiError as error:
        redacted = error.redacted(api_key)
        if redacted is error:
            raise
    raise redacted from None  # out here, the unredacted error is not even its __context__


def no_reply(request: ApiRequest, failure: str, detail: str) -> TelnyxApiError:
    """The error of a request that got no usable reply (``failure``: connect, timeout, connection, tls)."""
    return TelnyxApiError(
        status=None,
        method=request.method,
        path=request.path,
        detail=detail,
        failure=failure,
        hint=TLS_HINT if failure == "tls" else None,
    )


def not_sent(request: ApiRequest, seconds: float) -> TelnyxApiError:
    """The error of a request held back because the service asked every request to wait ``seconds`` more
    (after a 429) and that is longer than the request may wait. Retryable, after that wait."""
    return TelnyxApiError(
        status=None,
        method=request.method,
        path=request.path,
        detail=f"not sent: Telnyx asked this connection's requests to wait {seconds:.1f} s more (rate limit)",
        failure="rate_limited",
        headers={"retry-after": f"{seconds:.3f}"},
    )


def error_from_reply(
    request: ApiRequest, status: int, headers: Mapping[str, str], body: bytes
) -> TelnyxApiError:
    code = title = detail = None
    try:
        errors = _loads(body).get("errors")
        first = errors[0] if isinstance(errors, list) and errors else {}
        if isinstance(first, dict):
            code = None if first.get("code") is None else str(first["code"])
            title = first.get("title")
            detail = first.get("detail")
    except (ValueError, AttributeError):
        pass
    if code is None and title is None and detail is None and body.strip():
        detail = f"unexpected error body: {_preview(body)}"
    hint = _HINTS.get(status)
    if status == 404 and request.operation == "start_call_recording":
        hint = _START_NOT_FOUND_HINT
    lowered = {name.lower(): value for name, value in headers.items()}
    kept = {name: lowered[name] for name in RETRY_HEADERS if name in lowered}
    return TelnyxApiError(
        status=status,
        method=request.method,
        path=request.path,
        code=code,
        title=title,
        detail=detail,
        hint=hint,
        headers=kept,
    )


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _loads(body: bytes) -> Any:
    """Strict JSON: Python's ``NaN``/``Infinity`` extensions are refused (they would not survive XCom)."""
    try:
        return json.loads(body, parse_constant=_refuse_constant)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def _preview(body: bytes) -> str:
    text = body[:_BODY_PREVIEW].decode("utf-8", errors="replace").strip()
    return repr(text + ("..." if len(body) > _BODY_PREVIEW else ""))
