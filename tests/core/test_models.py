"""Unit tests for telnyx_provider.models: timestamps, durations, recording verdicts and uris."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta, timezone

import pytest

from telnyx_provider.models import (
    RecordingRef,
    Verdict,
    assess_recording,
    normalize_recording,
    parse_duration,
    parse_recording_uri,
    parse_timestamp,
)

ACCOUNT = "61bf923e-5e4d-4595-a110-56190ea18a1b"
CALL_SID = "v3:KBnLO0ZK3DhKM5s7bE9VluaSmKsOchKht_fUYvxcp8ysbmzCCtpkmA"
RECORDING = "b08f0fa1-a32c-4218-b3b5-9cf78941ccac"
# 19:12:11 UTC on 11 Aug 2023, the moment of the reference's sample, as datetime.isoformat() writes it.
MOMENT = datetime(2023, 8, 11, 19, 12, 11, tzinfo=timezone.utc)
MOMENT_ISO = MOMENT.isoformat()

# The reference's response sample for "Request recording for a call" (a few plain fields left out).
SAMPLE = {
    "account_sid": ACCOUNT,
    "call_sid": CALL_SID,
    "date_created": "Fri, 11 Aug 2023 19:12:11 +0000",
    "date_updated": "Fri, 11 Aug 2023 19:12:11 +0000",
    "start_time": "Fri, 11 Aug 2023 19:12:11 +0000",
    "price": "0.10",
    "duration": "12",
    "sid": "e9cea0be-7dbd-4b98-98b1-c0089d9d43b0",
    "source": "StartCallRecordingAPI",
    "error_code": None,
    "track": "inbound",
    "uri": f"/v2/texml/Accounts/{ACCOUNT}/Calls/{CALL_SID}/Recordings/{RECORDING}.json",
}


@pytest.mark.parametrize(
    "value",
    [
        "Fri, 11 Aug 2023 19:12:11 +0000",  # RFC 2822, as in the reference
        "Fri, 11 Aug 2023 19:12:11 GMT",
        "Fri, 11 Aug 2023 21:12:11 +0200",
        "Fri, 11 Aug 2023 14:12:11 -0500",
        "Sat, 12 Aug 2023 04:42:11 +0930",  # crosses midnight
        "2023-08-11T19:12:11Z",  # ISO 8601, as in the OpenAPI spec's examples
        "2023-08-11T19:12:11+00:00",
        "2023-08-11T21:12:11+02:00",
        "2023-08-11T14:12:11-05:00",
    ],
)
def test_parse_timestamp_gives_iso_8601_in_utc(value):
    assert parse_timestamp(value) == MOMENT_ISO


def test_parse_timestamp_keeps_fractional_seconds():
    parsed = parse_timestamp("2023-08-11T21:12:11.250+02:00")
    assert datetime.fromisoformat(parsed) == MOMENT + timedelta(milliseconds=250)
    assert datetime.fromisoformat(parsed).utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("", None)]
    + [(v, v) for v in ["not a date", "P1D", "Fri, 99 Foo 2023", "2023-13-45T99:99Z"]],
)
def test_parse_timestamp_of_nothing_is_none_and_garbage_is_kept(value, expected):
    assert parse_timestamp(value) == expected


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("12", 12), (12, 12), ("12.0", 12), (12.0, 12), ("0", 0), (0, 0), (" 7 ", 7)]
    + [(garbage, None) for garbage in (None, "", "abc", True, False, "nan", [], {})],
)
def test_parse_duration_reads_whole_seconds_or_none(value, seconds):
    result = parse_duration(value)
    assert result == seconds
    assert type(result) is type(seconds)


@pytest.mark.parametrize(
    "value", ["inf", "-Infinity", "1e400", float("inf")], ids=["inf", "-Infinity", "1e400", "float-inf"]
)
def test_parse_duration_of_non_finite_number_is_none(value):
    # json.loads accepts Infinity and "1e400" overflows to inf: garbage must give None, not OverflowError.
    assert parse_duration(value) is None


def test_normalize_recording_converts_dates_and_duration_and_keeps_everything_else():
    raw = {**SAMPLE, "media_url": "https://example.com/r.mp3", "future_field": {"nested": [1, "x"]}}
    before = copy.deepcopy(raw)
    recording = normalize_recording(raw)
    assert raw == before  # the input is not mutated
    for field in ("date_created", "date_updated", "start_time"):
        assert recording[field] == MOMENT_ISO
    assert recording["duration"] == 12
    untouched = set(raw) - {"date_created", "date_updated", "start_time", "duration"}
    assert {name: recording[name] for name in untouched} == {name: raw[name] for name in untouched}
    assert set(recording) == set(raw)
    assert json.loads(json.dumps(recording)) == recording  # goes to XCom


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"sid": "r1", "status": "paused"}, {"sid": "r1", "status": "paused"}),  # nothing is invented
        (
            {"sid": "r1", "duration": None, "start_time": "2023-08-11T19:12:11Z", "date_updated": ""},
            {"sid": "r1", "duration": None, "start_time": MOMENT_ISO, "date_updated": None},
        ),
    ],
)
def test_normalize_recording_other_shapes(raw, expected):
    assert normalize_recording(raw) == expected


@pytest.mark.parametrize(
    ("status", "duration", "verdict"),
    [
        ("in-progress", None, Verdict.WAIT),
        ("paused", None, Verdict.WAIT),
        ("stopped", None, Verdict.WAIT),  # the service may still be processing it
        ("completed", 12, Verdict.DONE),
        ("completed", 0, Verdict.DONE),  # a known duration, even zero, is final
        ("completed", None, Verdict.WAIT),
        ("processing", None, Verdict.WAIT),
        ("absent", None, Verdict.FAIL),
        ("failed", None, Verdict.FAIL),
        ("deleted", 12, Verdict.FAIL),
    ],
)
def test_assess_recording_for_known_statuses(status, duration, verdict):
    assessment = assess_recording({"sid": "rec-42", "status": status, "duration": duration})
    assert assessment.verdict is verdict
    assert "rec-42" in assessment.reason
    assert status in assessment.reason
    assert assessment.unknown_status is False


@pytest.mark.parametrize(
    ("recording", "shown"),
    [
        ({"sid": "rec-42", "status": "weird", "duration": 3}, "weird"),
        ({"sid": "rec-42", "status": "COMPLETED", "duration": 3}, "COMPLETED"),
        ({"sid": "rec-42", "duration": 3}, "None"),
    ],
)
def test_assess_recording_keeps_waiting_on_unknown_status(recording, shown):
    assessment = assess_recording(recording)
    assert assessment.verdict is Verdict.WAIT
    assert assessment.unknown_status is True
    assert "rec-42" in assessment.reason
    assert shown in assessment.reason


def test_assess_recording_failure_reason_names_the_error_code():
    assert "90001" in assess_recording({"sid": "r", "status": "failed", "error_code": "90001"}).reason


PREFIX = f"/v2/texml/Accounts/{ACCOUNT}"


@pytest.mark.parametrize(
    ("uri", "call_sid"),
    [
        (SAMPLE["uri"], CALL_SID),
        (f"{PREFIX}/Calls/v3%3A{CALL_SID[3:]}/Recordings/{RECORDING}.json", CALL_SID),  # percent-encoded
        (f"{PREFIX}/Calls/{CALL_SID}/Recordings/{RECORDING}", CALL_SID),
        (f"{PREFIX}/Recordings/{RECORDING}.json", None),
        (f"{PREFIX}/Recordings/{RECORDING}", None),
        (f"https://api.telnyx.com{PREFIX}/Recordings/{RECORDING}.json", None),
        (f" {PREFIX}/Recordings/{RECORDING}.json?x=1#top ", None),
    ],
)
def test_parse_recording_uri(uri, call_sid):
    assert parse_recording_uri(uri) == RecordingRef(ACCOUNT, RECORDING, call_sid)


@pytest.mark.parametrize(
    "uri",
    [
        f"{PREFIX}/Calls/{CALL_SID}.json",
        f"{PREFIX}/Recordings.json",
        f"{PREFIX}/Calls/{CALL_SID}/Recordings.json",
        f"{PREFIX}/Recordings/{RECORDING}/Transcriptions.json",
        "/v2/texml/Accounts//Recordings/r.json",
        "https://example.com/",
        "",
        None,
    ],
)
def test_parse_recording_uri_of_other_uris_is_none(uri):
    assert parse_recording_uri(uri) is None


@pytest.mark.parametrize(
    "value",
    ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "Fri, 31 Dec 9999 23:59:59 -0100"],
)
def test_a_date_no_utc_datetime_holds_is_kept_as_given(value):
    """Review of issue 17: one such date in a listing ended every shared wait (OverflowError)."""
    from telnyx_provider.recording_feed import parse_moment

    assert parse_timestamp(value) == value  # neither format we can place in UTC: kept rather than lost
    assert normalize_recording({"sid": RECORDING, "date_created": value})["date_created"] == value
    assert parse_moment(value) is None


def test_dates_read_again_read_the_same_and_only_the_standard_librarys_readings_are_remembered():
    """A listing's dates repeat (ordered by creation, to the second): their reading by the standard library is
    remembered, and reading a text again gives what reading it the first time gave; texts only pendulum reads
    are read afresh each time, as some are read against today ("10:00", "now")."""
    from telnyx_provider import models

    texts = [
        "Fri, 11 Aug 2023 19:12:11 +0000",
        "Fri, 11 Aug 2023 14:12:11 -0500",
        "2023-08-11T19:12:11Z",
        "Fri, 31 Dec 9999 23:59:59 -0100",  # kept as given
        "not a date",  # kept as given
    ]
    models._standard_text.cache_clear()
    first = [parse_timestamp(text) for text in texts]
    again = [parse_timestamp(text) for text in texts]
    assert again == first
    assert first[:3] == [MOMENT_ISO] * 3
    assert first[3:] == texts[3:]
    assert models._standard_text.cache_info().hits >= 3
    for read_against_today in ("now", "10:00"):
        assert models._standard_text(read_against_today) is None  # not a reading that is remembered
        assert parse_timestamp(read_against_today) != read_against_today  # pendulum reads it, afresh
    # A full page of the same few dates parses as each date alone does.
    page = [{"sid": RECORDING, "date_created": texts[i % 3], "start_time": texts[1]} for i in range(250)]
    assert {normalize_recording(item)["date_created"] for item in page} == {MOMENT_ISO}
