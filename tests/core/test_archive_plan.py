"""The archive's pure decisions: the interval, the layout, what each recording is due, retention periods."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pendulum
import pytest

from telnyx_provider.archive_plan import (
    DEFAULT_LAYOUT,
    Disposition,
    Layout,
    RetentionPeriod,
    disposition,
    parse_interval,
    parse_keep_for,
)
from telnyx_provider.errors import TelnyxValidationError

RECORDING = {
    "sid": "b08f0fa1-a32c-4218-b3b5-9cf78941ccac",
    "call_sid": "v3:KBnLO0ZK3DhKM5s7bE9VluaSmKsOchKht_fUYvxcp8ysbmzCCtpkmA",
    "date_created": "Wed, 31 Jan 2024 23:59:59 +0000",
    "source": "RecordVerb",
    "duration": 12,
    "channels": 2,
}
UTC = timezone.utc


# -- the interval ----------------------------------------------------------------------------------------


def test_the_interval_reads_what_airflow_renders_and_is_half_open():
    interval = parse_interval("2024-01-31 00:00:00+00:00", pendulum.datetime(2024, 2, 1, tz="Europe/Paris"))
    assert interval.start == datetime(2024, 1, 31, tzinfo=UTC)
    assert interval.end == datetime(2024, 1, 31, 23, tzinfo=UTC)  # midnight in Paris
    assert interval.contains(RECORDING) is False  # 23:59:59 UTC is after the end
    assert interval.contains({**RECORDING, "date_created": "2024-01-31T00:00:00Z"}) is True
    assert interval.contains({**RECORDING, "date_created": "2024-01-31T23:00:00Z"}) is False  # end excluded
    assert interval.contains({**RECORDING, "date_created": "garbage"}) is False
    assert interval.manifest_name == "_manifests/20240131T000000Z_20240131T230000Z.json"


def test_a_date_is_its_midnight_in_utc_and_microseconds_stay_in_the_name():
    interval = parse_interval(date(2024, 1, 1), datetime(2024, 1, 1, 0, 0, 0, 500, tzinfo=UTC))
    assert interval.name == "20240101T000000Z_20240101T000000.000500Z"


@pytest.mark.parametrize(
    ("date_from", "date_to", "message"),
    [
        ("None", "2024-01-02", "no data interval"),  # what a run without a data interval renders
        ("", "2024-01-02", "no data interval"),
        (datetime(2024, 1, 1), "2024-01-02", "timezone-aware"),  # naive: a guess
        ("yesterday", "2024-01-02", "ISO 8601"),
        ("2024-01-02", "2024-01-01", "after date_from"),
        (
            "2024-01-01",
            "2024-01-01T00:00:00Z",
            "CronTriggerTimetable",
        ),  # a trigger timetable's empty interval
        (12, "2024-01-01", "timezone-aware"),
    ],
)
def test_a_bad_or_empty_interval_is_refused(date_from, date_to, message):
    with pytest.raises(TelnyxValidationError, match=message):
        parse_interval(date_from, date_to)


# -- the layout ------------------------------------------------------------------------------------------


def test_the_default_layout_makes_day_and_call_folders():
    assert Layout(DEFAULT_LAYOUT).render(RECORDING, "wav") == (
        "2024/01/31/v3:KBnLO0ZK3DhKM5s7bE9VluaSmKsOchKht_fUYvxcp8ysbmzCCtpkmA/"
        "b08f0fa1-a32c-4218-b3b5-9cf78941ccac.wav"
    )


def test_values_cannot_escape_their_segment():
    layout = Layout("{source}/{call_sid}/{conference_sid}/{recording_sid}.{ext}")
    rendered = layout.render(
        {**RECORDING, "call_sid": "../../etc", "source": "..", "conference_sid": None}, "mp3"
    )
    assert rendered == "_/.._.._etc/none/b08f0fa1-a32c-4218-b3b5-9cf78941ccac.mp3"


def test_format_specs_apply_to_each_field():
    layout = Layout("{date_created:%Y-%m}/{duration:05d}-{channels}ch-{recording_sid}.{ext}")
    assert layout.render(RECORDING, "wav") == "2024-01/00012-2ch-b08f0fa1-a32c-4218-b3b5-9cf78941ccac.wav"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{call_sid}/{ext}", "recording_sid"),  # two recordings of a call would share an object
        ("{recording_sid}/{phone_number}", "fields among"),
        ("{recording_sid.upper}", "fields among"),
        ("{recording_sid[0]}", "fields among"),
        ("{recording_sid!r}", "conversions"),
        ("{recording_sid:{ext}}", "nested"),
        ("/abs/{recording_sid}", "relative"),
        ("a\\{recording_sid}", "relative"),
        ("a//{recording_sid}", "format specs"),  # an empty segment
        ("_manifests/{recording_sid}", "outside _manifests"),
        ("{recording_sid", "valid format string"),
        ("{date_created:%Y}/{source:d}/{recording_sid}", "format specs"),
        ("", "non-empty"),
        (None, "non-empty"),
    ],
)
def test_a_bad_layout_is_refused_when_built(template, message):
    with pytest.raises(TelnyxValidationError, match=message):
        Layout(template)


# -- dispositions ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "duration", "expected"),
    [
        ("completed", 12, Disposition.ARCHIVE),
        ("completed", None, Disposition.NOT_FINAL),  # still processing
        ("in-progress", None, Disposition.NOT_FINAL),
        ("paused", None, Disposition.NOT_FINAL),
        ("stopped", None, Disposition.NOT_FINAL),
        ("absent", 0, Disposition.NO_AUDIO),
        ("failed", None, Disposition.NO_AUDIO),
        ("something-new", 3, Disposition.NOT_FINAL),
    ],
)
def test_each_listed_recording_gets_a_disposition(status, duration, expected):
    assert disposition({**RECORDING, "status": status, "duration": duration}) is expected


# -- retention periods -------------------------------------------------------------------------------------


NOW = datetime(2024, 3, 31, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "cutoff"),
    [
        (timedelta(days=30), datetime(2024, 3, 1, 12, tzinfo=UTC)),
        (86400, datetime(2024, 3, 30, 12, tzinfo=UTC)),
        ("3600", datetime(2024, 3, 31, 11, tzinfo=UTC)),
        ("P30D", datetime(2024, 3, 1, 12, tzinfo=UTC)),
        ("PT36H", datetime(2024, 3, 30, 0, tzinfo=UTC)),
        ("P1M", datetime(2024, 2, 29, 12, tzinfo=UTC)),  # calendar month: Feb 29 of a leap year
        ("P7Y", datetime(2017, 3, 31, 12, tzinfo=UTC)),
        ("p1y1m1w1dt1h1m1.5s", datetime(2023, 2, 20, 10, 58, 58, 500000, tzinfo=UTC)),
    ],
)
def test_keep_for_reads_durations_with_calendar_years_and_months(value, cutoff):
    assert parse_keep_for(value).cutoff(NOW) == cutoff


@pytest.mark.parametrize(
    "value", [0, -5, "P", "PT", "P0D", "30 days", "P1.5Y", timedelta(0), True, None, float("nan")]
)
def test_keep_for_refuses_what_is_not_a_positive_duration(value):
    with pytest.raises(TelnyxValidationError, match="keep_for"):
        parse_keep_for(value)


def test_a_period_says_what_it_is():
    assert str(RetentionPeriod(7, 0, timedelta(0))) == "7 years"
    assert str(parse_keep_for("P1Y2M3D")) == "1 years + 2 months + 3 days, 0:00:00"


# -- the layout against hostile values (review of issue 18) ----------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        "{recording_sid:.8}.{ext}",  # two SIDs sharing their first 8 characters share one object
        "{recording_sid:.0}x{call_sid}.{ext}",  # every recording of a call at one object
        "{date_created:%Y}/{recording_sid:>40.36}.{ext}",
        "{recording_sid:s}.{ext}",  # harmless, but a spec on the SID is never needed
    ],
)
def test_a_format_spec_on_the_recording_sid_is_refused_as_it_could_make_two_recordings_share_an_object(
    template,
):
    with pytest.raises(TelnyxValidationError, match="recording_sid"):
        Layout(template)


HOSTILE_VALUES = [
    "/",
    "..",
    "../..",
    "%2F..%2F",
    "..%2F..%2Fescape",
    "\\..\\..",
    "#fragment",
    "?query=1",
    "v3:ünïcødé-名前",
    "a\x00b\x1fc\x7f",
    "x" * 300,
    "x" * 299 + "y",
    "名前" * 100,
    "",
    None,
]


def test_hostile_values_never_leave_the_prefix_nor_make_two_recordings_share_a_path():
    import posixpath

    layout = Layout("{source}/{call_sid}/{conference_sid}/{account_sid}/{recording_sid}.{ext}")
    paths = {}
    for index, value in enumerate(HOSTILE_VALUES):
        recording = {
            **RECORDING,
            "sid": f"rec-{index}",
            "call_sid": value,
            "source": value,
            "conference_sid": value,
            "account_sid": value,
        }
        path = layout.render(recording, "wav")
        segments = path.split("/")
        assert len(segments) == 5, path  # each value stays one segment
        assert all(segment not in ("", ".", "..") for segment in segments), path
        assert all(len(segment.encode()) <= 255 for segment in segments), path  # a file name on any disk
        assert not any(ord(ch) < 32 or ord(ch) == 127 for ch in path), path
        assert posixpath.normpath(f"/root/{path}").startswith("/root/")
        paths[path] = index
    assert len(paths) == len(HOSTILE_VALUES)  # no two recordings at one path
    # Long values are shortened, and two long values that differ only at the end stay apart.
    long_a = layout.render({**RECORDING, "call_sid": "x" * 300}, "wav").split("/")[1]
    long_b = layout.render({**RECORDING, "call_sid": "x" * 299 + "y"}, "wav").split("/")[1]
    assert long_a != long_b
    assert long_a == layout.render({**RECORDING, "call_sid": "x" * 300}, "wav").split("/")[1]  # stable


def test_a_manifest_name_gives_back_its_interval_and_nothing_else_does():
    from telnyx_provider.archive_plan import interval_of_manifest

    for interval in (
        parse_interval("2024-01-31", "2024-02-01"),
        parse_interval("2024-01-31T00:00:00.5Z", "2024-01-31T10:00:00Z"),
    ):
        assert interval_of_manifest(interval.manifest_name.split("/")[1]) == interval
    for name in (
        "notes.json",
        "20240101T000000Z_20240101T000000Z.json",
        "20240102T000000Z_20240101T000000Z.json",
    ):
        assert interval_of_manifest(name) is None


@pytest.mark.parametrize(
    ("relative", "expected"),
    [
        ("2024/01/31/v3:call/b08f0fa1-a32c-4218-b3b5-9cf78941ccac.wav", True),
        ("2024/01/31/v3:call/0000.wav", False),  # another recording's object
        ("../b08f0fa1-a32c-4218-b3b5-9cf78941ccac.wav", False),
        ("a//b08f0fa1-a32c-4218-b3b5-9cf78941ccac.wav", False),
        ("_manifests/b08f0fa1-a32c-4218-b3b5-9cf78941ccac.wav", False),
    ],
)
def test_an_object_name_names_its_recording_or_not(relative, expected):
    from telnyx_provider.archive_plan import names_recording

    assert names_recording(relative, RECORDING["sid"]) is expected
