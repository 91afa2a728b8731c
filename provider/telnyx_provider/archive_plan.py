"""What an archive run decides before any request: its interval, where each recording goes, what is due.

Pure: no I/O, no Airflow. :func:`parse_interval` reads ``[date_from, date_to)``; :class:`Layout` checks an
object-name template such as ``{date_created:%Y/%m/%d}/{call_sid}/{recording_sid}.{ext}`` and renders it for a
recording; :func:`disposition` sorts a listed recording into "archive it", "it has no audio" and "not final
yet"; :func:`parse_keep_for` reads a retention period (a ``timedelta``, seconds, or ISO 8601 ``P30D``).
"""

from __future__ import annotations

import enum
import hashlib
import re
import string
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import pendulum

from telnyx_provider.errors import TelnyxValidationError
from telnyx_provider.models import Verdict, assess_recording
from telnyx_provider.params import is_unresolved, require_identifier
from telnyx_provider.recording_feed import parse_moment as parse_moment_of

if TYPE_CHECKING:
    from collections.abc import Mapping

#: The default layout: one folder per day (UTC), one per call, the recording named by its SID.
DEFAULT_LAYOUT = "{date_created:%Y/%m/%d}/{call_sid}/{recording_sid}.{ext}"
#: The folder below ``dst`` that holds one manifest per interval; a layout may not write into it.
MANIFEST_FOLDER = "_manifests"
#: Fields a layout may use: each recording's own (as listed), and the media's file extension.
LAYOUT_FIELDS = (
    "recording_sid",
    "call_sid",
    "conference_sid",
    "account_sid",
    "source",
    "channels",
    "duration",
    "date_created",
    "ext",
)
_FIELD_RE = re.compile(r"[a-z_]+")
_MOMENT = r"(\d{8}T\d{6}(?:\.\d{6})?Z)"
_MANIFEST_NAME_RE = re.compile(rf"{_MOMENT}_{_MOMENT}\.json")
#: What a value may not bring into an object's name: folder separators and control characters.
_UNSAFE_RE = re.compile(r"[/\\\x00-\x1f\x7f]")
#: The longest value kept whole in an object's name, in UTF-8 bytes (Telnyx's SIDs are far shorter); a
#: longer one is shortened with a hash of the whole.
LONGEST_VALUE = 120
_ISO_DURATION = re.compile(
    r"P(?:(?P<years>\d+)Y)?(?:(?P<months>\d+)M)?(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?"
)
_SAMPLE = {
    "sid": "b08f0fa1-a32c-4218-b3b5-9cf78941ccac",
    "call_sid": "v3:KBnLO0ZK3DhKM5s7bE9VluaSmKsOchKht_fUYvxcp8ysbmzCCtpkmA",
    "conference_sid": None,
    "account_sid": "61bf923e-5e4d-4595-a110-56190ea18a1b",
    "source": "DialVerb",
    "channels": 2,
    "duration": 60,
    "date_created": "2024-01-31T23:59:59+00:00",
}


@dataclass(frozen=True)
class Interval:
    """The half-open interval ``[start, end)`` of creation times an archive run covers (aware, UTC)."""

    start: datetime
    end: datetime

    def contains(self, recording: Mapping[str, Any]) -> bool:
        """Whether the recording was created in the interval (one whose date cannot be read is not)."""
        created = created_at(recording)
        return created is not None and self.start <= created < self.end

    @property
    def name(self) -> str:
        """``20240101T000000Z_20240102T000000Z``: the interval in a file name (with microseconds if any)."""
        return f"{_compact(self.start)}_{_compact(self.end)}"

    @property
    def manifest_name(self) -> str:
        """The manifest's object name below ``dst``: ``_manifests/{name}.json``."""
        return f"{MANIFEST_FOLDER}/{self.name}.json"


def _compact(moment: datetime) -> str:
    text = moment.strftime("%Y%m%dT%H%M%S")
    return f"{text}.{moment.microsecond:06d}Z" if moment.microsecond else f"{text}Z"


def interval_of_manifest(file_name: str) -> Interval | None:
    """The interval a manifest's file name (``20240101T000000Z_20240102T000000Z.json``) says it covers, or
    ``None`` for a name the archive does not write (read without opening the manifest)."""
    match = _MANIFEST_NAME_RE.fullmatch(file_name)
    if match is None:
        return None
    start, end = (
        datetime.strptime(text, "%Y%m%dT%H%M%S.%fZ" if "." in text else "%Y%m%dT%H%M%SZ").replace(
            tzinfo=timezone.utc
        )
        for text in match.groups()
    )
    return Interval(start, end) if start < end else None


def names_recording(relative_path: str, recording_sid: str) -> bool:
    """Whether an object's name below ``dst`` can be a recording's: a relative path without empty, ``.`` or
    ``..`` segments, outside :data:`MANIFEST_FOLDER`, holding the SID as a layout renders it (every layout
    holds ``{recording_sid}`` whole). It tells one recording's copy from another's; it cannot prove bytes."""
    segments = relative_path.split("/")
    return (
        all(segment not in ("", ".", "..") for segment in segments)
        and segments[0] != MANIFEST_FOLDER
        and _safe(recording_sid) in relative_path
    )


def parse_moment(argument: str, value: object) -> datetime:
    """A moment given as an aware ``datetime``, a ``date`` (its midnight UTC) or an ISO 8601 string (UTC
    unless it has an offset), as an aware UTC ``datetime``.

    :raises TelnyxValidationError: anything else, a naive datetime included (its time zone would be a guess).
    """
    expected = "a timezone-aware datetime, a date or an ISO 8601 date(-time) string"
    if isinstance(value, str):
        text = value.strip()
        if text in ("", "None"):
            raise TelnyxValidationError(
                argument, value, f"{expected} (the DAG run has no data interval: give date_from and date_to)"
            )
        try:
            value = pendulum.parse(text)
        except (ValueError, pendulum.parsing.exceptions.ParserError):
            raise TelnyxValidationError(argument, value, expected) from None
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise TelnyxValidationError(argument, value, expected)
        return datetime.fromtimestamp(value.timestamp(), timezone.utc)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    raise TelnyxValidationError(argument, value, expected)


def parse_interval(date_from: object, date_to: object) -> Interval:
    """``[date_from, date_to)`` from two moments (see :func:`parse_moment`); ``date_to`` must be later.

    :raises TelnyxValidationError: a bad moment, or an empty or reversed interval.
    """
    start, end = parse_moment("date_from", date_from), parse_moment("date_to", date_to)
    if end < start:
        raise TelnyxValidationError("date_to", date_to, f"a moment after date_from ({start.isoformat()})")
    if end == start:
        raise TelnyxValidationError(
            "date_to",
            date_to,
            f"a moment after date_from ({start.isoformat()}), not the same: the interval is empty. A DAG run "
            "of a cron schedule has no data interval by default on Airflow 3 (CronTriggerTimetable); give "
            'the DAG schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC") (one day a run), or '
            "give date_from and date_to",
        )
    return Interval(start, end)


def created_at(recording: Mapping[str, Any]) -> datetime | None:
    """A recording's ``date_created`` (RFC 2822 or ISO 8601) as an aware UTC datetime, if readable."""
    return parse_moment_of(recording.get("date_created"))


class Layout:
    """Where a recording's object goes below ``dst``: a ``str.format`` template over :data:`LAYOUT_FIELDS`.

    ``date_created`` is a datetime (UTC), so ``{date_created:%Y/%m/%d}`` makes day folders; ``ext`` is the
    media's extension (``wav``, ``mp3``), known once its reply arrives. The template is checked when built:
    known fields only, no attribute or index access, no conversions, ``{recording_sid}`` present and without
    a format spec (two recordings never share an object), a relative path with no empty, ``.`` or ``..``
    segment, and never into :data:`MANIFEST_FOLDER`. Values holding ``/``, ``\\`` or control characters get
    ``_`` in their place; a missing value renders as ``none``; a value longer than :data:`LONGEST_VALUE`
    bytes is shortened with a hash.

    :param template: the layout.
    :raises TelnyxValidationError: a template that breaks a rule above.
    """

    def __init__(self, template: object) -> None:
        if not isinstance(template, str) or not template.strip() or template != template.strip():
            raise TelnyxValidationError("layout", template, "a non-empty format string")
        try:
            parts = list(string.Formatter().parse(template))
        except ValueError as error:
            raise TelnyxValidationError("layout", template, f"a valid format string ({error})") from None
        fields = [(name, spec, conversion) for _, name, spec, conversion in parts if name is not None]
        for name, spec, conversion in fields:
            if not _FIELD_RE.fullmatch(name) or name not in LAYOUT_FIELDS:
                raise TelnyxValidationError("layout", template, f"fields among {', '.join(LAYOUT_FIELDS)}")
            if conversion is not None or (spec and "{" in spec):
                raise TelnyxValidationError(
                    "layout", template, "fields without !conversions or nested fields"
                )
        if "recording_sid" not in {name for name, _, _ in fields}:
            raise TelnyxValidationError("layout", template, "a template holding {recording_sid}")
        if any(name == "recording_sid" and spec for name, spec, _ in fields):
            # A precision cuts the SID ({recording_sid:.8}): two recordings would share one object.
            raise TelnyxValidationError(
                "layout", template, "{recording_sid} without a format spec (the whole SID, always)"
            )
        if template.startswith("/") or "\\" in template:
            raise TelnyxValidationError("layout", template, "a relative path with / between folders")
        self.template = template
        try:
            sample = self.render(_SAMPLE, "wav")
        except (ValueError, TypeError) as error:
            raise TelnyxValidationError(
                "layout", template, f"format specs that fit each field ({error})"
            ) from None
        if sample.split("/", 1)[0] == MANIFEST_FOLDER:
            raise TelnyxValidationError("layout", template, f"a path outside {MANIFEST_FOLDER}/")

    def render(self, recording: Mapping[str, Any], ext: str) -> str:
        """The object name of ``recording`` (as listed or fetched) with media extension ``ext``.

        :raises ValueError: a rendered path with an empty, ``.`` or ``..`` segment (a format spec's doing).
        """
        created = created_at(recording) or datetime(1970, 1, 1, tzinfo=timezone.utc)
        values: dict[str, Any] = {name: _safe(recording.get(name)) for name in LAYOUT_FIELDS}
        values.update(recording_sid=_safe(recording.get("sid")), date_created=created, ext=_safe(ext))
        if isinstance(recording.get("duration"), int):
            values["duration"] = recording["duration"]
        path = self.template.format(**values)
        if any(segment in ("", ".", "..") for segment in path.split("/")):
            raise ValueError(f"the layout renders {path!r}, which has an empty, '.' or '..' segment")
        return path


def _safe(value: object) -> str:
    """A field's value as one path segment: ``/``, ``\\`` and control characters replaced, nothing empty or
    dotted, and a value longer than :data:`LONGEST_VALUE` bytes (UTF-8) shortened to its start, ``~`` and a
    hash of the whole: a file name fits any disk, and two long values still differ."""
    if value is None or value == "":
        return "none"
    text = _UNSAFE_RE.sub("_", str(value))
    if len(text.encode()) > LONGEST_VALUE:
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        start = text.encode()[: LONGEST_VALUE - len(digest) - 1].decode(errors="ignore")
        text = f"{start}~{digest}"
    return "_" if text in (".", "..") else text


def check_destination(dst: object, ids: Mapping[str, object], *, rendered: bool) -> None:
    """Check an archive task's ``dst`` and identifiers (``dest_conn_id``, ``account_sid``...): literal ones
    when the DAG is parsed (``rendered=False``), all of them once rendered, before any request.

    :raises TelnyxValidationError: a blank ``dst`` or an identifier with spaces, ``/``, ``?`` or ``#``.
    """
    if dst is None or (isinstance(dst, str) and (rendered or not is_unresolved(dst)) and not dst.strip()):
        raise TelnyxValidationError("dst", dst, "an ObjectStoragePath, a URL or a local path")
    for name, value in ids.items():
        if value is not None and (rendered or not is_unresolved(value)):
            require_identifier(name, value)


class Disposition(str, enum.Enum):
    """What an archive run does with a listed recording."""

    ARCHIVE = "archive"  #: final with audio: copy it
    NO_AUDIO = "no_audio"  #: ended without audio (``absent``, ``failed``, ``deleted``): nothing to copy
    NOT_FINAL = "not_final"  #: still ``in-progress``, ``paused``, ``stopped`` or processing: a later run


def disposition(recording: Mapping[str, Any]) -> Disposition:
    """Sort a listed recording: final (``completed`` with a duration), without audio, or not final yet."""
    verdict = assess_recording(recording).verdict
    if verdict is Verdict.DONE:
        return Disposition.ARCHIVE
    if verdict is Verdict.FAIL:
        return Disposition.NO_AUDIO
    return Disposition.NOT_FINAL


@dataclass(frozen=True)
class RetentionPeriod:
    """How long recordings are kept: calendar years and months, then an exact duration.

    :param years: calendar years.
    :param months: calendar months.
    :param exact: the rest (weeks, days, hours...).
    """

    years: int = 0
    months: int = 0
    exact: timedelta = timedelta(0)

    def cutoff(self, now: datetime) -> datetime:
        """The moment before which a recording is older than the period (calendar arithmetic, UTC)."""
        moment = pendulum.instance(now).in_timezone("UTC").subtract(years=self.years, months=self.months)
        return datetime.fromtimestamp(moment.timestamp(), timezone.utc) - self.exact

    def __str__(self) -> str:
        parts = [f"{self.years} years"] * bool(self.years) + [f"{self.months} months"] * bool(self.months)
        if self.exact or not parts:
            parts.append(str(self.exact))
        return " + ".join(parts)


def parse_keep_for(value: object) -> RetentionPeriod:
    """A retention period from a ``timedelta``, a number of seconds, or an ISO 8601 duration (``P30D``,
    ``P7Y``, ``PT36H``, ``P1Y6M``); years and months are calendar ones. It must be longer than zero.

    :raises TelnyxValidationError: anything else.
    """
    expected = "a positive duration: a timedelta, seconds, or ISO 8601 such as 'P30D' or 'P7Y'"
    if isinstance(value, timedelta):
        period = RetentionPeriod(exact=value)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if value != value or value in (float("inf"), float("-inf")):
            raise TelnyxValidationError("keep_for", value, expected)
        period = RetentionPeriod(exact=timedelta(seconds=value))
    elif isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?", value.strip()):
        period = RetentionPeriod(exact=timedelta(seconds=float(value)))
    elif (
        isinstance(value, str)
        and (match := _ISO_DURATION.fullmatch(value.strip().upper()))
        and value.strip() != "P"
    ):
        numbers = {name: float(text) for name, text in match.groupdict().items() if text is not None}
        exact = timedelta(
            weeks=numbers.get("weeks", 0),
            days=numbers.get("days", 0),
            hours=numbers.get("hours", 0),
            minutes=numbers.get("minutes", 0),
            seconds=numbers.get("seconds", 0),
        )
        period = RetentionPeriod(int(numbers.get("years", 0)), int(numbers.get("months", 0)), exact)
    else:
        raise TelnyxValidationError("keep_for", value, expected)
    if period.years < 0 or period.months < 0 or period.exact < timedelta(0) or period == RetentionPeriod():
        raise TelnyxValidationError("keep_for", value, expected)
    return period
