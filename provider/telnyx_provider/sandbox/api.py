"""The ``/v2`` TeXML recording routes: routing, authentication, body decoding and replies (no sockets)."""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlencode

from telnyx_provider.sandbox.errors import CODE_AUTH_FAILED, CODE_BAD_REQUEST, ApiError, not_found
from telnyx_provider.sandbox.params import parse_paging, parse_start_params, parse_update_status
from telnyx_provider.sandbox.schema import created_reply, fetched_reply, page_reply

if TYPE_CHECKING:
    from telnyx_provider.sandbox.callbacks import StatusNotifier
    from telnyx_provider.sandbox.store import RecordingStore

FORM_TYPE = "application/x-www-form-urlencoded"
JSON_TYPE = "application/json"


@dataclass(slots=True)
class Reply:
    """An HTTP reply before it is written.

    :param status: HTTP status code.
    :param body: the body bytes (empty for 204).
    :param headers: extra headers.
    :param content_type: the ``Content-Type`` of a non-empty body.
    """

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = JSON_TYPE


def json_reply(obj: Any, status: int = 200) -> Reply:
    """Serialise ``obj`` once into a JSON reply.

    :param obj: a JSON-serialisable value.
    :param status: HTTP status code.
    """
    return Reply(status, json.dumps(obj).encode())


def error_reply(error: ApiError) -> Reply:
    """Turn an :class:`~telnyx_provider.sandbox.errors.ApiError` into its Telnyx-shaped JSON reply.

    :param error: the error.
    """
    return Reply(error.status, error.body(), dict(error.headers))


def decode_form(raw: bytes | str) -> dict[str, str]:
    """Decode a query string or form body, keeping the first value of each name.

    :param raw: ``application/x-www-form-urlencoded`` bytes or text.
    """
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    form: dict[str, str] = {}
    for name, value in parse_qsl(text, keep_blank_values=True):
        form.setdefault(name, value)
    return form


def form_of(body: bytes, content_type: str | None) -> dict[str, str]:
    """Decode a request body as a form; an empty body is an empty form whatever its content type.

    :param body: the raw body.
    :param content_type: the ``Content-Type`` header (a ``charset`` parameter is allowed).
    :raises ApiError: 415 for a non-empty body of another type.
    """
    if not body:
        return {}
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type != FORM_TYPE:
        raise ApiError(
            415,
            CODE_BAD_REQUEST,
            "Unsupported media type",
            f"Request bodies must be {FORM_TYPE}, got {media_type or 'no content type'}",
        )
    return decode_form(body)


def _date_filters(query: Mapping[str, str]) -> str:
    """Return the ``DateCreated`` filters of a list request, encoded again for its page links."""
    return urlencode([(name, value) for name, value in query.items() if name.startswith("DateCreated")])


Handler = Callable[[tuple[str, ...], Mapping[str, str], bytes, str | None], Reply]


@dataclass(frozen=True, slots=True)
class Resolved:
    """An API request matched to its route.

    :param route_key: the stats key, e.g. ``"GET /Recordings/{sid}"``.
    :param handler: the function answering it.
    :param args: the decoded path parameters (account sid first).
    """

    route_key: str
    handler: Handler
    args: tuple[str, ...]


_SEGMENT = r"([^/]+)"
_ACCOUNT = rf"/v2/texml/Accounts/{_SEGMENT}"


class RecordingApi:
    """Answers the TeXML recording routes under ``/v2``.

    From a :class:`~telnyx_provider.sandbox.store.RecordingStore`.

    :param store: the calls and recordings.
    :param notifier: told of starts, stops and so on, to send status callbacks.
    :param api_key: the bearer token requests must carry.
    :param strict_schema: answer each route with exactly the fields of its response schema in Telnyx's spec
        (see :mod:`telnyx_provider.sandbox.schema`); else the sandbox's fuller replies.
    """

    def __init__(
        self, store: RecordingStore, notifier: StatusNotifier, api_key: str, *, strict_schema: bool = True
    ) -> None:
        self.store = store
        self.notifier = notifier
        self.strict_schema = strict_schema
        self._expected_auth = api_key.encode()
        self._routes: list[tuple[re.Pattern[str], dict[str, tuple[str, Handler]]]] = [
            (
                re.compile(rf"{_ACCOUNT}/Calls/{_SEGMENT}/Recordings\.json"),
                {
                    "POST": ("POST /Calls/{call_sid}/Recordings", self._start),
                    "GET": ("GET /Calls/{call_sid}/Recordings", self._list_call),
                },
            ),
            (
                re.compile(rf"{_ACCOUNT}/Calls/{_SEGMENT}/Recordings/{_SEGMENT}\.json"),
                {
                    "POST": ("POST /Calls/{call_sid}/Recordings/{sid}", self._update),
                },
            ),
            (
                re.compile(rf"{_ACCOUNT}/Recordings/{_SEGMENT}\.json"),
                {
                    "GET": ("GET /Recordings/{sid}", self._get),
                    "DELETE": ("DELETE /Recordings/{sid}", self._delete),
                },
            ),
            (
                re.compile(rf"{_ACCOUNT}/Recordings\.json"),
                {
                    "GET": ("GET /Recordings", self._list),
                },
            ),
            (
                re.compile(rf"{_ACCOUNT}/Transcriptions/{_SEGMENT}\.json"),
                {
                    "GET": ("GET /Transcriptions/{sid}", self._get_transcription),
                    "DELETE": ("DELETE /Transcriptions/{sid}", self._delete_transcription),
                },
            ),
            (
                re.compile(rf"{_ACCOUNT}/Transcriptions\.json"),
                {
                    "GET": ("GET /Transcriptions", self._list_transcriptions),
                },
            ),
        ]

    def rotate_key(self, api_key: str) -> None:
        """Accept ``api_key`` from now on, and no longer the key accepted so far (a revoked key gets 401).

        :param api_key: the new bearer token.
        """
        self._expected_auth = api_key.encode()

    @property
    def route_keys(self) -> list[str]:
        """Return every route key (as in stats), e.g. ``"GET /Recordings/{sid}"``."""
        return [key for _, methods in self._routes for key, _ in methods.values()]

    def resolve(self, method: str, path: str) -> Resolved:
        """Match a request to its route; path segments are percent-decoded after splitting.

        :param method: the HTTP method.
        :param path: the request path without query string.
        :raises ApiError: 404 for an unknown route, 405 (with ``Allow``) for a wrong method.
        """
        for pattern, methods in self._routes:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            if method not in methods:
                allowed = ", ".join(sorted(methods))
                raise ApiError(
                    405,
                    CODE_BAD_REQUEST,
                    "Method not allowed",
                    f"{method} is not allowed on {path}; use {allowed}",
                    {"Allow": allowed},
                )
            route_key, handler = methods[method]
            return Resolved(route_key, handler, tuple(unquote(group) for group in match.groups()))
        raise not_found(f"No route for {path}")

    def authenticate(self, authorization: str | None) -> None:
        """Check the ``Authorization: Bearer <api key>`` header.

        :param authorization: the header's value, or None.
        :raises ApiError: 401 (code 10009) when it is missing or wrong.
        """
        if not authorization:
            raise ApiError(
                401,
                CODE_AUTH_FAILED,
                "Authentication failed",
                "Missing Authorization header; expected 'Bearer <API key>'",
            )
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self._expected_auth):
            raise ApiError(401, CODE_AUTH_FAILED, "Authentication failed", "The API key is not valid")

    def handle(
        self, resolved: Resolved, authorization: str | None, query: str, body: bytes, content_type: str | None
    ) -> Reply:
        """Authenticate and answer a resolved request; API errors become Telnyx-shaped replies.

        :param resolved: the matched route.
        :param authorization: the ``Authorization`` header.
        :param query: the raw query string.
        :param body: the raw body.
        :param content_type: the ``Content-Type`` header.
        """
        try:
            self.authenticate(authorization)
            return resolved.handler(resolved.args, decode_form(query) if query else {}, body, content_type)
        except ApiError as error:
            return error_reply(error)

    def _page(self, page: dict[str, Any], key: str) -> dict[str, Any]:
        return page_reply(page, key) if self.strict_schema else page

    def _start(
        self, args: tuple[str, ...], query: Mapping[str, str], body: bytes, ctype: str | None
    ) -> Reply:
        params = parse_start_params(form_of(body, ctype))
        view = self.store.start_recording(args[0], args[1], params)
        self.notifier.started(view, params)
        return json_reply(created_reply(view) if self.strict_schema else view)

    def _list_call(
        self, args: tuple[str, ...], query: Mapping[str, str], body: bytes, ctype: str | None
    ) -> Reply:
        paging = parse_paging(query)
        page = self.store.list_call_recordings(args[0], args[1], paging, _date_filters(query))
        return json_reply(self._page(page, "recordings"))

    def _update(
        self, args: tuple[str, ...], query: Mapping[str, str], body: bytes, ctype: str | None
    ) -> Reply:
        status = parse_update_status(form_of(body, ctype))
        view = self.store.update_recording(args[0], args[1], args[2], status)
        if status == "stopped":
            self.notifier.watch(args[2])
        return json_reply(created_reply(view) if self.strict_schema else view)

    def _get(self, args: tuple[str, ...], query: Mapping[str, str], body: bytes, ctype: str | None) -> Reply:
        view = self.store.get_recording(args[0], args[1])
        return json_reply(fetched_reply(view) if self.strict_schema else view)

    def _delete(
        self, args: tuple[str, ...], query: Mapping[str, str], body: bytes, ctype: str | None
    ) -> Reply:
        self.store.delete_recording(args[0], args[1])
        return Reply(204)

    def _list(self, args: tuple[str, ...], query: Mapping[str, str], body: bytes, ctype: str | None) -> Reply:
        page = self.store.list_recordings(args[0], parse_paging(query), _date_filters(query))
        return json_reply(self._page(page, "recordings"))

    def _list_transcriptions(
        self, args: tuple[str, ...], query: Mapping[str, str], body: bytes, ctype: str | None
    ) -> Reply:
        paging = parse_paging({name: query[name] for name in ("Page", "PageSize") if name in query})
        page = self.store.list_transcriptions(args[0], paging, query.get("PageToken") or None)
        return json_reply(self._page(page, "transcriptions"))

    def _get_transcription(
        self, args: tuple[str, ...], query: Mapping[str, str], body: bytes, ctype: str | None
    ) -> Reply:
        return json_reply(self.store.get_transcription(args[0], args[1]))

    def _delete_transcription(
        self, args: tuple[str, ...], query: Mapping[str, str], body: bytes, ctype: str | None
    ) -> Reply:
        self.store.delete_transcription(args[0], args[1])
        return Reply(204)
