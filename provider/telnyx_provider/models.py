"""The recording model: what a Telnyx recording reply becomes, and when a recording is final.

Pure: no I/O. Every reply goes through :func:`normalize_recording`, so the sync hook, the async
client, the sensor and the trigger all see the same plain, JSON-serialisable dict (it goes to XCom).
"""

from __future__ import annotations

import contextlib
import enum
import functools
import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import pendulum

if TYPE_CHECKING:
    from collections.abc import Mapping

#: Fields holding timestamps; Telnyx sends RFC 2822 (docs) or ISO 8601 (newest spec).
DATE_FIELDS = ("date_created", "date_updated", "start_time")

_URI_RE = re.compile(
    r"/texml/Accounts/(?P<account_sid>[^/]+)(?:/Calls/(?P<call_sid>[^/]+))?"
    r"/Recordings/(?P<recording_sid>[^/?#]+?)(?:\.json)?(?:[?#].*)?$"
)


class RecordingStatus(str, enum.Enum):
    """Statuses a recording can report. The spec lists the first four; callbacks also know ``absent``."""

    IN_PROGRESS = "in-progress"
    PAUSED = "paused"
    STOPPED = "stopped"
    COMPLETED = "completed"
    PROCESSING = "processing"
    ABSENT = "absent"
    FAILED = "failed"
    DELETED = "deleted"

    @property
    def is_failure(self) -> bool:
        """The recording will never complete: there is nothing to wait for."""
        return self in (RecordingStatus.ABSENT, RecordingStatus.FAILED, RecordingStatus.DELETED)

    @property
    def is_active(self) -> bool:
        """The recording is still capturing audio (or could resume doing so)."""
        return self in (RecordingStatus.IN_PROGRESS, RecordingStatus.PAUSED)


class Verdict(str, enum.Enum):
    """What a waiter should do after looking at a recording."""

    DONE = "done"
    WAIT = "wait"
    FAIL = "fail"


@dataclass(frozen=True)
class Assessment:
    """The outcome of :func:`assess_recording`: a verdict, and a sentence for the log or the error."""

    verdict: Verdict
    reason: str
    unknown_status: bool = False


#: Distinct date texts whose reading by the standard library is remembered. A listing is ordered by creation
#: and its dates are to the second, so they repeat one after another: a page of 250 recordings created within
#: a few seconds holds a handful of distinct dates among its 750 (~4 µs each to read, ~0.1 µs remembered).
DATE_CACHE_SIZE = 512


def parse_timestamp(value: object) -> str | None:
    """Return ``value`` (RFC 2822 or ISO 8601) as an ISO 8601 string in UTC; ``None`` stays ``None``.

    A value that is neither format is kept as given rather than lost.
    """
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        return str(value)
    # The standard library first (a list page carries three dates for each of its recordings; pendulum
    # costs ~0.4 ms a date), pendulum for the ISO forms only it reads. Pendulum's reading is not remembered:
    # it reads some texts against today ("10:00", "now").
    text = _standard_text(value)
    if text is not None:
        return text
    try:
        parsed = pendulum.parse(value)
    except (ValueError, pendulum.parsing.exceptions.ParserError):
        return value
    if not isinstance(parsed, pendulum.DateTime):
        return value
    return _utc_text(parsed, value)


@functools.lru_cache(maxsize=DATE_CACHE_SIZE)
def _standard_text(value: str) -> str | None:
    """``value`` read by the standard library (ISO 8601, else RFC 2822) as :func:`parse_timestamp` gives
    it, or ``None`` if it reads neither (a pure function of the text, so remembered)."""
    moment: datetime | None = None
    if value[:4].isdigit() and value[4:5] == "-":  # ISO 8601
        with contextlib.suppress(ValueError):
            moment = datetime.fromisoformat(value)
    if moment is None:
        try:
            moment = parsedate_to_datetime(value)  # RFC 2822
        except (TypeError, ValueError, IndexError):
            return None
    return _utc_text(moment, value)


def _utc_text(moment: datetime, value: str) -> str:
    """``moment`` in UTC as ISO 8601 (no zone, or RFC 2822's ``-0000``: UTC, as the API's dates are);
    ``value`` as given if no UTC datetime holds it (year 1 ahead of UTC, year 9999 behind)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    try:
        return moment.astimezone(timezone.utc).isoformat()
    except OverflowError:
        return value


def parse_duration(value: object) -> int | None:
    """Return the duration in whole seconds (Telnyx sends ``"12"``, ``12`` or ``null``)."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return int(seconds) if math.isfinite(seconds) else None


def normalize_recording(raw: Mapping[str, Any], *, copy: bool = True) -> dict[str, Any]:
    """Build the provider's recording dict from a Telnyx recording object.

    Dates become ISO 8601, ``duration`` an int or ``None``; every other field, known or not, is kept.

    :param copy: build a new dict; ``False`` changes ``raw`` itself (a dict just decoded from a reply, which
        nobody else holds: a list page of a thousand recordings is not held twice).
    """
    recording = dict(raw) if copy or not isinstance(raw, dict) else raw
    for field in DATE_FIELDS:
        if field in recording:
            recording[field] = parse_timestamp(recording[field])
    if "duration" in recording:
        recording["duration"] = parse_duration(recording["duration"])
    return recording


def status_of(recording: Mapping[str, Any]) -> RecordingStatus | None:
    """The recording's status as a :class:`RecordingStatus`, or ``None`` if it is not one we know."""
    try:
        return RecordingStatus(recording.get("status"))
    except ValueError:
        return None


def assess_recording(recording: Mapping[str, Any]) -> Assessment:
    """Decide whether a recording is final: ``completed`` *and* a duration.

    ``in-progress``, ``paused``, ``stopped`` (and ``completed`` without a duration yet) keep waiting: after a
    hang-up or a stop the service may report them with a null duration while it processes. ``absent``,
    ``failed`` and ``deleted`` fail. Any other status keeps waiting, flagged as unknown.
    """
    sid = recording.get("sid", "?")
    raw_status = recording.get("status")
    status = status_of(recording)
    duration = recording.get("duration")
    if status is RecordingStatus.COMPLETED and duration is not None:
        return Assessment(Verdict.DONE, f"Recording {sid} completed ({duration} s).")
    if status is not None and status.is_failure:
        return Assessment(
            Verdict.FAIL,
            f"Recording {sid} ended with status {raw_status!r}"
            + (f" (error_code {recording['error_code']})" if recording.get("error_code") else "")
            + ": there is no recording to wait for.",
        )
    if status is None:
        return Assessment(
            Verdict.WAIT, f"Recording {sid} has unknown status {raw_status!r}; still waiting.", True
        )
    return Assessment(Verdict.WAIT, f"Recording {sid} is {raw_status} (duration {duration}); waiting.")


@dataclass(frozen=True)
class RecordingRef:
    """Where a recording lives, as parsed from its ``uri``."""

    account_sid: str
    recording_sid: str
    call_sid: str | None = None


def parse_recording_uri(uri: str) -> RecordingRef | None:
    """Parse a recording ``uri`` in either form (call-scoped or account-scoped, relative or absolute)."""
    match = _URI_RE.search(urlsplit(uri.strip()).path) if isinstance(uri, str) else None
    if match is None:
        return None
    call_sid = match.group("call_sid")
    return RecordingRef(
        account_sid=unquote(match.group("account_sid")),
        recording_sid=unquote(match.group("recording_sid")),
        call_sid=unquote(call_sid) if call_sid else None,
    )
