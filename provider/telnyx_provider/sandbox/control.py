"""The sandbox's own routes: the ``/_sandbox/...`` control surface (no auth)."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote

from telnyx_provider.sandbox.api import JSON_TYPE, Reply, decode_form, error_reply, json_reply
from telnyx_provider.sandbox.errors import CODE_BAD_REQUEST, ApiError, not_found

if TYPE_CHECKING:
    from collections.abc import Sequence

_HANGUP = re.compile(r"/_sandbox/calls/([^/]+)/hangup")
_STARTED = re.compile(r"/_sandbox/calls/([^/]+)/started")
_REPLAY = re.compile(r"/_sandbox/recordings/([^/]+)/callbacks/replay")


class Controls(Protocol):
    """What the control routes act on (implemented by :class:`telnyx_provider.sandbox.Sandbox`)."""

    def create_call(
        self,
        hangup_after: float | None = None,
        silent: bool = False,
        transcribe: bool = False,
        audio_seconds: int | None = None,
    ) -> str:
        """Create a live call."""

    def hangup(self, call_sid: str) -> None:
        """Hang a call up."""

    def seed_history(
        self,
        days: int,
        *,
        per_day: int = 20,
        audio_seconds: int = 60,
        absent_rate: float = 0.05,
        not_final: int = 2,
        seed: int | None = None,
    ) -> dict[str, Any]:
        """Seed recordings over past days."""

    def stats(self) -> dict[str, Any]:
        """Return the counters."""

    def started_on(self, call_sid: str) -> list[dict[str, Any]]:
        """What was started on a call (the service's own side)."""

    def set_faults(self, fault_rate: float, faults: Sequence[str] | None = None) -> None:
        """Change fault injection."""

    def inject(self, route: str, kind: str, count: int = 1, call_sid: str | None = None) -> None:
        """Give the next ``count`` requests of a route a fault."""

    def inject_media(self, kind: str, count: int = 1, location: str | None = None) -> None:
        """Give the next ``count`` media requests a fault."""

    def configure_media(
        self,
        framing: str = "length",
        audio_format: str = "wav",
        bytes_per_second: float | None = None,
        link: str | None = None,
    ) -> None:
        """Set how media are served."""

    def replay_callback(self, recording_sid: str) -> int | None:
        """Send a recording's last callback again; KeyError if none."""


def _bad_request(detail: str) -> ApiError:
    return ApiError(400, CODE_BAD_REQUEST, "Bad request", detail)


def _options(body: bytes, content_type: str | None) -> dict[str, Any]:
    """Decode an optional JSON or form body of a control request."""
    if not body:
        return {}
    if (content_type or "").split(";", 1)[0].strip().lower() == JSON_TYPE:
        try:
            loaded = json.loads(body)
        except ValueError:
            raise _bad_request("Body is not valid JSON") from None
        if not isinstance(loaded, dict):
            raise _bad_request("Body must be a JSON object")
        return loaded
    return dict(decode_form(body))


def _flag(value: Any) -> bool:
    return value is True or str(value).lower() in ("true", "1", "yes")


def _call_options(options: dict[str, Any]) -> tuple[float | None, bool, bool, int | None]:
    raw, audio = options.get("hangup_after"), options.get("audio_seconds")
    try:
        hangup_after = None if raw in (None, "") else float(raw)
    except (TypeError, ValueError):
        raise _bad_request(f"hangup_after must be a number of seconds, got {raw!r}") from None
    try:
        audio_seconds = None if audio in (None, "") else int(audio)
    except (TypeError, ValueError):
        raise _bad_request(f"audio_seconds must be a whole number of seconds, got {audio!r}") from None
    silent, transcribe = _flag(options.get("silent", False)), _flag(options.get("transcribe", False))
    return hangup_after, silent, transcribe, audio_seconds


def _fault_options(options: dict[str, Any]) -> tuple[float, list[str] | None]:
    faults = options.get("faults")
    if isinstance(faults, str):
        faults = [kind for kind in faults.split(",") if kind]
    if faults is not None and not isinstance(faults, list):
        raise _bad_request("faults must be a list of fault kinds")
    try:
        return float(options.get("fault_rate", 0.0)), faults
    except (TypeError, ValueError):
        raise _bad_request("fault_rate must be a number") from None


def _inject_options(options: dict[str, Any]) -> tuple[str, str, int, str | None]:
    route, kind, call_sid = options.get("route"), options.get("kind"), options.get("call_sid")
    if not isinstance(route, str) or not isinstance(kind, str):
        raise _bad_request("route and kind are required strings")
    if call_sid is not None and not isinstance(call_sid, str):
        raise _bad_request("call_sid must be a string")
    return route, kind, _count(options), call_sid or None


def _count(options: dict[str, Any]) -> int:
    raw = options.get("count", 1)
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise _bad_request(f"count must be an integer, got {raw!r}") from None


def _configure_media(controls: Controls, options: dict[str, Any]) -> dict[str, Any]:
    raw_rate = options.get("bytes_per_second")
    try:
        rate = None if raw_rate in (None, "") else float(raw_rate)
    except (TypeError, ValueError):
        raise _bad_request(f"bytes_per_second must be a number, got {raw_rate!r}") from None
    framing, audio_format = str(options.get("framing") or "length"), str(options.get("format") or "wav")
    link = options.get("link") or None
    controls.configure_media(framing, audio_format, rate, link)
    return {"framing": framing, "format": audio_format, "bytes_per_second": rate, "link": link}


_HISTORY_INTEGERS = ("days", "per_day", "audio_seconds", "not_final", "seed")


def _history_options(options: dict[str, Any]) -> dict[str, Any]:
    unknown = set(options) - {*_HISTORY_INTEGERS, "absent_rate"}
    if unknown:
        raise _bad_request(f"unknown history option(s) {sorted(unknown)}")
    chosen: dict[str, Any] = {}
    for name in _HISTORY_INTEGERS:
        raw = options.get(name)
        if raw in (None, ""):
            continue
        try:
            chosen[name] = int(raw)
        except (TypeError, ValueError):
            raise _bad_request(f"{name} must be a whole number, got {raw!r}") from None
    if "days" not in chosen:
        raise _bad_request("days is required")
    if options.get("absent_rate") not in (None, ""):
        try:
            chosen["absent_rate"] = float(options["absent_rate"])
        except (TypeError, ValueError):
            raise _bad_request(f"absent_rate must be a number, got {options['absent_rate']!r}") from None
    return chosen


def handle_control(
    controls: Controls, method: str, path: str, body: bytes, content_type: str | None
) -> Reply:
    """Answer a ``/_sandbox/...`` or ``/media/...`` request.

    Routes: ``POST /_sandbox/calls`` (JSON or form ``hangup_after``, ``silent``, ``transcribe``,
    ``audio_seconds``) → 201 ``{"call_sid"}``;
    ``POST /_sandbox/calls/{call_sid}/hangup``; ``GET /_sandbox/calls/{call_sid}/started`` →
    ``{"started": [{"sid", "track", "channels", "callback_url"}]}``; ``GET /_sandbox/stats``;
    ``POST /_sandbox/faults``
    (``{"fault_rate", "faults"}``); ``POST /_sandbox/inject`` (``{"route", "kind", "count", "call_sid"}``) →
    ``{"injections_pending"}``; ``POST /_sandbox/inject_media`` (``{"kind", "count"}``) →
    ``{"media_injections_pending"}``; ``POST /_sandbox/history`` (``{"days", "per_day", "audio_seconds",
    "absent_rate", "not_final", "seed"}``) → 201 with what was seeded (see ``Sandbox.seed_history``);
    ``POST /_sandbox/recordings/{sid}/callbacks/replay`` →
    ``{"recording_sid", "status"}`` (the receiver's status; 404 if no callback was sent);
    ``GET /_sandbox/health``.

    :param controls: the sandbox to act on.
    :param method: HTTP method.
    :param path: request path without query string.
    :param body: raw body.
    :param content_type: ``Content-Type`` header.
    """
    try:
        return _route(controls, method, path, body, content_type)
    except ApiError as error:
        return error_reply(error)
    except ValueError as error:  # e.g. an unknown fault kind
        return error_reply(ApiError(422, CODE_BAD_REQUEST, "Invalid value", str(error)))


def _route(controls: Controls, method: str, path: str, body: bytes, content_type: str | None) -> Reply:
    if path == "/_sandbox/health" and method == "GET":
        return json_reply({"status": "ok"})
    if path == "/_sandbox/stats" and method == "GET":
        return json_reply(controls.stats())
    if path == "/_sandbox/calls" and method == "POST":
        call_sid = controls.create_call(*_call_options(_options(body, content_type)))
        return json_reply({"call_sid": call_sid}, 201)
    if path == "/_sandbox/history" and method == "POST":
        options = _history_options(_options(body, content_type))
        days = options.pop("days")
        return json_reply(controls.seed_history(days, **options), 201)
    if (hangup := _HANGUP.fullmatch(path)) is not None and method == "POST":
        call_sid = unquote(hangup.group(1))
        controls.hangup(call_sid)
        return json_reply({"call_sid": call_sid, "status": "completed"})
    if (started := _STARTED.fullmatch(path)) is not None and method == "GET":
        return json_reply({"started": controls.started_on(unquote(started.group(1)))})
    if path == "/_sandbox/faults" and method == "POST":
        rate, faults = _fault_options(_options(body, content_type))
        controls.set_faults(rate, faults)
        current = controls.stats()
        return json_reply({"fault_rate": current["fault_rate"], "faults": current["faults"]})
    if path == "/_sandbox/inject" and method == "POST":
        controls.inject(*_inject_options(_options(body, content_type)))
        return json_reply({"injections_pending": controls.stats()["injections_pending"]})
    if path == "/_sandbox/inject_media" and method == "POST":
        options = _options(body, content_type)
        kind, count, location = options.get("kind"), _count(options), options.get("location")
        if not isinstance(kind, str):
            raise _bad_request("kind is a required string")
        controls.inject_media(kind, count, location)
        return json_reply({"media_injections_pending": controls.stats()["media_injections_pending"]})
    if path == "/_sandbox/media" and method == "POST":
        return json_reply(_configure_media(controls, _options(body, content_type)))
    if (replay := _REPLAY.fullmatch(path)) is not None and method == "POST":
        recording_sid = unquote(replay.group(1))
        try:
            status = controls.replay_callback(recording_sid)
        except KeyError:
            raise not_found(f"No status callback was sent for recording {recording_sid}") from None
        return json_reply({"recording_sid": recording_sid, "status": status})
    raise not_found(f"No route for {method} {path}")
