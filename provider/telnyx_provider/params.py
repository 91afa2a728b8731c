"""The parameters of the TeXML recording endpoints and their validation.

Pure: no I/O, no Airflow import beyond the error type. Every value is checked here before a request is
built, so a bad value fails with a message naming the argument, the value and what is allowed, and
nothing is sent. Enum values are case-sensitive, as the API is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import pendulum

from telnyx_provider.errors import TelnyxValidationError
from telnyx_provider.models import parse_recording_uri

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

CALLBACK_EVENTS = ("in-progress", "completed", "absent")
CALLBACK_METHODS = ("GET", "POST")
RECORDING_CHANNELS = ("single", "dual")
RECORDING_TRACKS = ("inbound", "outbound", "both")
UPDATE_STATUSES = ("in-progress", "paused", "stopped")

#: A host name (dot-separated labels of letters, digits, ``-``, ``_``; IPv4 addresses too) or an IPv6 address.
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?"
_HOST_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?|[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*(?:%[\w.-]+)?")
#: Characters that end or split a URL path segment, or cannot be sent in one.
_NOT_IN_IDENTIFIER = frozenset("/\\?#\x7f")
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


def _choices(allowed: Iterable[str]) -> str:
    return "one of " + ", ".join(repr(value) for value in allowed)


def require_identifier(argument: str, value: object) -> str:
    """Return ``value`` as an identifier (a SID) that is one URL path segment, or raise naming ``argument``.

    Refused: blanks, ``.`` and ``..`` (HTTP clients collapse them: ``list_call_recordings("..")`` would
    list the whole account), and any character that ends or splits a path segment (``/``, ``\\``, ``?``,
    ``#``, spaces, control characters), also once percent-decoded (``%2e%2e``, ``%2F``, ``%252F``), since a
    proxy or server may decode the segment again.
    """
    if not isinstance(value, str) or not value.strip():
        raise TelnyxValidationError(argument, value, "a non-empty string identifier")
    decoded, previous = value, None
    while decoded != previous:  # a round that changes the text shortens it: this ends
        previous, decoded = decoded, unquote(decoded)
        if decoded in (".", "..") or any(
            ch in _NOT_IN_IDENTIFIER or ch.isspace() or ord(ch) < 32 for ch in decoded
        ):
            raise TelnyxValidationError(
                argument,
                value,
                "an identifier that is one URL path segment: not '.' or '..', without spaces, control "
                "characters, '/', '\\', '?' or '#' (percent-encoded ones included)",
            )
    return value


def require_choice(argument: str, value: object, allowed: tuple[str, ...]) -> str:
    """Return ``value`` if it is exactly one of ``allowed`` (case-sensitive), else raise."""
    if not isinstance(value, str) or value not in allowed:
        raise TelnyxValidationError(argument, value, _choices(allowed) + _case_hint(value, allowed))
    return value


def _case_hint(value: object, allowed: Iterable[str]) -> str:
    """Point out a value that is allowed but for its case (the API is case-sensitive)."""
    if isinstance(value, str):
        for choice in allowed:
            if value.strip().lower() == choice.lower():
                return f" (values are case-sensitive: did you mean {choice!r}?)"
    return ""


def require_bool(argument: str, value: object) -> bool:
    """Return ``value`` as a bool; accepts bools and rendered-template strings such as ``"True"``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise TelnyxValidationError(argument, value, "a boolean (True or False)")


def require_http_url(argument: str, value: object) -> str:
    """Return ``value`` if it is an absolute http(s) URL with a valid host (and port), else raise.

    Whitespace and control characters are refused anywhere: Telnyx could not call such a URL.
    """
    if isinstance(value, str) and value and not any(ch.isspace() or ord(ch) < 32 for ch in value):
        try:
            parts = urlsplit(value)
            host = parts.hostname
            parts.port  # noqa: B018 - raises ValueError on a port that is not a number in 0-65535
        except ValueError:
            host = None
        if parts.scheme in ("http", "https") and host and _HOST_RE.fullmatch(host):
            return value
    raise TelnyxValidationError(
        argument, value, "an absolute http:// or https:// URL with a valid host and port, without spaces"
    )


def require_positive_number(argument: str, value: object) -> float:
    """Return ``value`` as a float if it is a number greater than zero, else raise."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise TelnyxValidationError(argument, value, "a number greater than 0")
    return float(value)


def format_date_filter(argument: str, value: object) -> str:
    """A ``DateCreated`` filter value: ``YYYY-MM-DD`` for a date, ``YYYY-MM-DDThh:mm:ssZ`` (UTC) otherwise.

    Accepts a timezone-aware ``datetime``, a ``date`` or an ISO 8601 string; a naive datetime is refused
    (its time zone would be a guess).
    """
    expected = "a timezone-aware datetime, a date or an ISO 8601 date(-time) string"
    if isinstance(value, str):
        try:
            parsed = pendulum.parse(value.strip(), exact=True)
        except (ValueError, pendulum.parsing.exceptions.ParserError):
            raise TelnyxValidationError(argument, value, expected) from None
        if isinstance(parsed, pendulum.Date) and not isinstance(parsed, pendulum.DateTime):
            return parsed.isoformat()
        value = parsed
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise TelnyxValidationError(argument, value, expected)
        return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, date):
        return value.isoformat()
    raise TelnyxValidationError(argument, value, expected)


def normalize_callback_events(value: object) -> str:
    """Turn a string (space- or comma-separated) or a list of events into the API's space-separated form."""
    argument = "recording_status_callback_event"
    if isinstance(value, str):
        events = value.replace(",", " ").split()
    elif isinstance(value, list | tuple | set | frozenset):
        events = list(value)
    else:
        raise TelnyxValidationError(argument, value, f"a string or a list of {_choices(CALLBACK_EVENTS)}")
    if not events:
        raise TelnyxValidationError(argument, value, f"at least one of {_choices(CALLBACK_EVENTS)}")
    for event in events:
        if not isinstance(event, str) or event not in CALLBACK_EVENTS:
            raise TelnyxValidationError(argument, event, _choices(CALLBACK_EVENTS))
    # Keep the caller's order, drop repeats.
    return " ".join(dict.fromkeys(events))


@dataclass(frozen=True)
class StartRecordingParams:
    """The seven body parameters of *Request recording for a call*, validated on construction.

    ``None`` means "not sent": the API then applies its own default (beep on, ``completed`` events,
    ``POST`` callbacks, ``dual`` channels, ``both`` tracks, recording URL sent).
    """

    play_beep: bool | None = None
    recording_status_callback: str | None = None
    recording_status_callback_event: str | None = None
    recording_status_callback_method: str | None = None
    recording_channels: str | None = None
    recording_track: str | None = None
    send_recording_url: bool | None = None

    @classmethod
    def from_arguments(cls, **arguments: Any) -> StartRecordingParams:
        """Validate user-facing arguments (snake_case names, ``None`` = not sent) and build the parameters."""
        unknown = sorted(set(arguments) - set(_VALIDATORS))
        if unknown:
            raise TelnyxValidationError("arguments", unknown, f"names among {sorted(_VALIDATORS)}")
        validated: dict[str, Any] = {
            name: None if value is None else _VALIDATORS[name](name, value)
            for name, value in arguments.items()
        }
        return cls(**validated)

    def to_form(self) -> dict[str, str]:
        """The form body as the API names it: booleans as ``true``/``false``, unset values left out."""
        form: dict[str, str] = {}
        for name, value in self._api_fields().items():
            if value is None:
                continue
            form[name] = ("true" if value else "false") if isinstance(value, bool) else str(value)
        return form

    def _api_fields(self) -> Mapping[str, object]:
        return {
            "PlayBeep": self.play_beep,
            "RecordingStatusCallback": self.recording_status_callback,
            "RecordingStatusCallbackEvent": self.recording_status_callback_event,
            "RecordingStatusCallbackMethod": self.recording_status_callback_method,
            "RecordingChannels": self.recording_channels,
            "RecordingTrack": self.recording_track,
            "SendRecordingUrl": self.send_recording_url,
        }


def _choice_of(allowed: tuple[str, ...]) -> Callable[[str, object], str]:
    return lambda argument, value: require_choice(argument, value, allowed)


_VALIDATORS: dict[str, Callable[[str, object], object]] = {
    "play_beep": require_bool,
    "recording_status_callback": require_http_url,
    "recording_status_callback_event": lambda _argument, value: normalize_callback_events(value),
    "recording_status_callback_method": _choice_of(CALLBACK_METHODS),
    "recording_channels": _choice_of(RECORDING_CHANNELS),
    "recording_track": _choice_of(RECORDING_TRACKS),
    "send_recording_url": require_bool,
}


def has_template(value: object) -> bool:
    """Whether an argument still holds a Jinja template (validated only once rendered)."""
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, list | tuple):
        return any(has_template(item) for item in value)
    return False


def is_unresolved(value: object) -> bool:
    """Whether a value is known only at run time, so it is validated in ``execute``, not when parsed.

    True for a Jinja template, an ``XComArg`` (``task.output``, ``task.output["key"]``, a TaskFlow call's
    result), a mapped argument, Airflow's ``NOTSET`` (an argument a ``.partial()`` leaves to ``.expand()``),
    and a list, tuple or dict holding one of these.
    """
    if has_template(value):
        return True
    if isinstance(value, list | tuple):
        return any(is_unresolved(item) for item in value)
    if isinstance(value, dict):
        return any(is_unresolved(item) for item in value.values())
    # Airflow's ResolveMixin (XComArg, MappedArgument...) without importing its private module.
    if callable(getattr(value, "resolve", None)) and callable(getattr(value, "iter_references", None)):
        return True
    return type(value).__name__ in ("ArgNotSet", "SetDuringExecution")


def resolve_recording(
    recording_sid: object, recording_uri: object, account_sid: object, *, rendered: bool
) -> tuple[str, str | None]:
    """The ``(recording_sid, account_sid)`` named by a SID or a recording URI (exactly one of the two).

    Before rendering (``rendered=False``), values known only at run time are left for later and
    ``("", None)`` is returned.
    """
    if (recording_sid is None) == (recording_uri is None):
        raise TelnyxValidationError(
            "recording_sid/recording_uri",
            {"recording_sid": recording_sid, "recording_uri": recording_uri},
            "exactly one of the two",
        )
    if not rendered and any(is_unresolved(value) for value in (recording_sid, recording_uri, account_sid)):
        return "", None
    account = None if account_sid is None else require_identifier("account_sid", account_sid)
    if recording_sid is not None:
        return require_identifier("recording_sid", recording_sid), account
    ref = parse_recording_uri(recording_uri) if isinstance(recording_uri, str) else None
    if ref is None:
        raise TelnyxValidationError(
            "recording_uri",
            recording_uri,
            "a recording URI such as /v2/texml/Accounts/{account_sid}/Recordings/{recording_sid}.json",
        )
    return ref.recording_sid, account if account is not None else ref.account_sid
