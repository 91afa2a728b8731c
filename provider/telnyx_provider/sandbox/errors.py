"""Errors of the sandbox API and the Telnyx-shaped JSON body they are answered with."""

from __future__ import annotations

import json

# Telnyx error codes the sandbox answers with (as strings, as Telnyx sends them).
CODE_MISSING_PARAMETER = "10004"
CODE_NOT_FOUND = "10005"
CODE_UNEXPECTED = "10007"
CODE_AUTH_FAILED = "10009"
CODE_TOO_MANY_REQUESTS = "10011"
CODE_SERVICE_UNAVAILABLE = "10013"
CODE_BAD_REQUEST = "10015"
CODE_INVALID_TYPE = "10026"
CODE_INVALID_VALUE = "10032"


def error_body(code: str, title: str, detail: str) -> bytes:
    """Serialise one error the way Telnyx does: ``{"errors": [{"code", "title", "detail"}]}``.

    :param code: Telnyx error code, a string such as ``"10005"``.
    :param title: short, fixed title of the error kind.
    :param detail: human-readable explanation of this occurrence.
    :return: the UTF-8 JSON body.
    """
    return json.dumps({"errors": [{"code": code, "title": title, "detail": detail}]}).encode()


class ApiError(Exception):
    """An API request the sandbox refuses, carrying the HTTP status and the Telnyx error fields.

    :param status: HTTP status code of the reply.
    :param code: Telnyx error code (a string).
    :param title: short title of the error kind.
    :param detail: explanation of this occurrence.
    :param headers: extra reply headers (e.g. ``Retry-After``).
    """

    def __init__(
        self, status: int, code: str, title: str, detail: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(f"{status} {code} {title}: {detail}")
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.headers = headers or {}

    def body(self) -> bytes:
        """Return the Telnyx-shaped JSON body of this error."""
        return error_body(self.code, self.title, self.detail)


def not_found(detail: str) -> ApiError:
    """Build a 404 ``Resource not found`` error.

    :param detail: what was not found.
    """
    return ApiError(404, CODE_NOT_FOUND, "Resource not found", detail)


def invalid_value(name: str, value: str, allowed: tuple[str, ...]) -> ApiError:
    """Build a 422 error for a parameter whose value is not in its enumeration.

    :param name: parameter name as sent (e.g. ``RecordingTrack``).
    :param value: the value received.
    :param allowed: the values the parameter accepts.
    """
    detail = f"{name} must be one of {', '.join(allowed)} (got {value!r})"
    return ApiError(422, CODE_INVALID_VALUE, "Invalid value", detail)


def invalid_type(name: str, value: str, expected: str) -> ApiError:
    """Build a 422 error for a parameter whose value has the wrong type or format.

    :param name: parameter name as sent.
    :param value: the value received.
    :param expected: description of the expected type, e.g. ``"a boolean (true or false)"``.
    """
    return ApiError(422, CODE_INVALID_TYPE, "Invalid type", f"{name} must be {expected} (got {value!r})")
