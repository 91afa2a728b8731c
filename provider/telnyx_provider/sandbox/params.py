"""Parsing and validation of the request parameters the sandbox accepts (pure, no I/O)."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from telnyx_provider.sandbox.errors import CODE_MISSING_PARAMETER, ApiError, invalid_type, invalid_value

CALLBACK_EVENTS = ("in-progress", "completed", "absent")
CALLBACK_METHODS = ("GET", "POST")
CHANNELS = ("single", "dual")
TRACKS = ("inbound", "outbound", "both")
UPDATE_STATUSES = ("in-progress", "paused", "stopped")
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 1000

Form = Mapping[str, str]


@dataclass(frozen=True, slots=True)
class StartParams:
    """Validated parameters of a *start call recording* request (defaults as documented by Telnyx)."""

    play_beep: bool = True
    events: frozenset[str] = frozenset({"completed"})
    callback_url: str | None = None
    callback_method: str = "POST"
    channels: str = "dual"
    track: str = "both"
    send_recording_url: bool = True


@dataclass(frozen=True, slots=True)
class Paging:
    """Validated paging and filtering of a list request.

    :param page: zero-indexed page number.
    :param page_size: number of items per page.
    :param created_from: only items created at or after this epoch time.
    :param created_before: only items created before this epoch time.
    """

    page: int = 0
    page_size: int = DEFAULT_PAGE_SIZE
    created_from: float = -math.inf
    created_before: float = math.inf


def _boolean(form: Form, name: str, default: bool) -> bool:
    raw = form.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    raise invalid_type(name, raw, "a boolean (true or false)")


def _enum(form: Form, name: str, allowed: tuple[str, ...], default: str) -> str:
    raw = form.get(name)
    if raw is None or raw == "":
        return default
    if raw not in allowed:
        raise invalid_value(name, raw, allowed)
    return raw


def _callback_url(form: Form) -> str | None:
    raw = form.get("RecordingStatusCallback")
    if raw is None or raw == "":
        return None
    try:
        parts = urlsplit(raw)
        _ = parts.port  # raises ValueError on a non-numeric or out-of-range port
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise invalid_type("RecordingStatusCallback", raw, "an absolute http or https URL")
    return raw


def parse_start_params(form: Form) -> StartParams:
    """Validate the form of a *start call recording* request; unknown parameters are ignored.

    :param form: decoded form fields (first value of each name).
    :raises ApiError: 422 with code 10032 for a value outside an enumeration, 10026 for a wrong type or URL.
    """
    raw_events = form.get("RecordingStatusCallbackEvent", "").split()
    for event in raw_events:
        if event not in CALLBACK_EVENTS:
            raise invalid_value("RecordingStatusCallbackEvent", event, CALLBACK_EVENTS)
    return StartParams(
        play_beep=_boolean(form, "PlayBeep", True),
        events=frozenset(raw_events) if raw_events else frozenset({"completed"}),
        callback_url=_callback_url(form),
        callback_method=_enum(form, "RecordingStatusCallbackMethod", CALLBACK_METHODS, "POST"),
        channels=_enum(form, "RecordingChannels", CHANNELS, "dual"),
        track=_enum(form, "RecordingTrack", TRACKS, "both"),
        send_recording_url=_boolean(form, "SendRecordingUrl", True),
    )


def parse_update_status(form: Form) -> str:
    """Return the validated ``Status`` of an *update recording* request.

    :param form: decoded form fields.
    :raises ApiError: 422 code 10004 when ``Status`` is missing, 10032 when it is not an allowed value.
    """
    status = form.get("Status")
    if not status:
        raise ApiError(422, CODE_MISSING_PARAMETER, "Missing required parameter", "Status is required")
    if status not in UPDATE_STATUSES:
        raise invalid_value("Status", status, UPDATE_STATUSES)
    return status


def _non_negative_int(query: Form, name: str, default: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise invalid_type(name, raw, "a non-negative integer") from None
    if value < 0:
        raise invalid_type(name, raw, "a non-negative integer")
    return value


def _day_or_second(name: str, raw: str) -> tuple[float, float]:
    """Return the ``[low, high)`` epoch interval a date (whole day) or a date-time (one second) denotes."""
    try:
        if len(raw) == 10:
            day = dt.datetime.strptime(raw, "%Y-%m-%d").replace(tzinfo=dt.timezone.utc)
            return day.timestamp(), day.timestamp() + 86400.0
        moment = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise invalid_type(name, raw, "an ISO 8601 date or date-time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.timestamp(), moment.timestamp() + 1.0


def _date_created_bounds(query: Form) -> tuple[float, float]:
    # 'DateCreated>=2023-05-22' arrives as the key 'DateCreated>' (the query splits on the first '='),
    # so the three forms narrow one [from, before) interval.
    created_from, created_before = -math.inf, math.inf
    for key, use_low, use_high in (
        ("DateCreated", True, True),
        ("DateCreated>", True, False),
        ("DateCreated<", False, True),
    ):
        raw = query.get(key)
        if raw:
            low, high = _day_or_second(key, raw)
            created_from = max(created_from, low) if use_low else created_from
            created_before = min(created_before, high) if use_high else created_before
    return created_from, created_before


def parse_paging(query: Form) -> Paging:
    """Validate ``Page`` (zero-indexed), ``PageSize`` (1..1000, default 20) and the ``DateCreated`` filters.

    ``DateCreated`` accepts a date (the whole UTC day) or a date-time (that second), and the inequality
    forms ``DateCreated>=`` / ``DateCreated<=``.

    :param query: decoded query parameters.
    :raises ApiError: 422 code 10026 for a malformed value.
    """
    page_size = _non_negative_int(query, "PageSize", DEFAULT_PAGE_SIZE)
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise invalid_type("PageSize", str(page_size), f"an integer from 1 to {MAX_PAGE_SIZE}")
    created_from, created_before = _date_created_bounds(query)
    return Paging(_non_negative_int(query, "Page", 0), page_size, created_from, created_before)
