"""Unit tests for telnyx_provider.params: the body of *Request recording for a call* and its validation.

The expected API names and enum values come from /work/shared/reference/start-call-recording.txt and the
TeXML OpenAPI spec (TexmlCreateCallRecordingRequestBody), not from the module under test.
"""

from __future__ import annotations

import pytest

from telnyx_provider._compat import AirflowException
from telnyx_provider.errors import TelnyxValidationError
from telnyx_provider.params import StartRecordingParams, require_identifier, require_positive_number

# A call SID as it appears in the reference's response sample.
CALL_SID = "v3:KBnLO0ZK3DhKM5s7bE9VluaSmKsOchKht_fUYvxcp8ysbmzCCtpkmA"
CALLBACK = "https://hooks.example.com/telnyx/recording?team=ops"

# Allowed values, per the reference ("Possible values: [...]").
CHANNELS = ("single", "dual")
TRACKS = ("inbound", "outbound", "both")
METHODS = ("GET", "POST")
EVENTS = ("in-progress", "completed", "absent")
ARGUMENT_NAMES = (
    "play_beep",
    "recording_status_callback",
    "recording_status_callback_event",
    "recording_status_callback_method",
    "recording_channels",
    "recording_track",
    "send_recording_url",
)


def test_every_argument_is_sent_under_its_api_name():
    params = StartRecordingParams.from_arguments(
        play_beep=False,
        recording_status_callback=CALLBACK,
        recording_status_callback_event=["in-progress", "completed"],
        recording_status_callback_method="GET",
        recording_channels="single",
        recording_track="inbound",
        send_recording_url=True,
    )
    assert params.to_form() == {
        "PlayBeep": "false",
        "RecordingStatusCallback": CALLBACK,
        "RecordingStatusCallbackEvent": "in-progress completed",
        "RecordingStatusCallbackMethod": "GET",
        "RecordingChannels": "single",
        "RecordingTrack": "inbound",
        "SendRecordingUrl": "true",
    }


@pytest.mark.parametrize("arguments", [{}, dict.fromkeys(ARGUMENT_NAMES)])
def test_unset_arguments_are_not_sent(arguments):
    # None means "let the API apply its default": the field must be absent, not "None" or "".
    assert StartRecordingParams.from_arguments(**arguments).to_form() == {}


@pytest.mark.parametrize(
    ("given", "sent"),
    [
        (True, "true"),
        (False, "false"),
        ("True", "true"),  # a rendered Jinja template gives str(True)
        ("False", "false"),
        ("false", "false"),
        ("true", "true"),
        (" TRUE ", "true"),
    ],
)
@pytest.mark.parametrize("argument", ["play_beep", "send_recording_url"])
def test_booleans_are_sent_as_lower_case_words(argument, given, sent):
    form = StartRecordingParams.from_arguments(**{argument: given}).to_form()
    api_name = {"play_beep": "PlayBeep", "send_recording_url": "SendRecordingUrl"}[argument]
    assert form == {api_name: sent}


@pytest.mark.parametrize(
    ("argument", "api_name", "allowed"),
    [
        ("recording_channels", "RecordingChannels", CHANNELS),
        ("recording_track", "RecordingTrack", TRACKS),
        ("recording_status_callback_method", "RecordingStatusCallbackMethod", METHODS),
    ],
)
def test_every_documented_enum_value_is_accepted(argument, api_name, allowed):
    for value in allowed:
        assert StartRecordingParams.from_arguments(**{argument: value}).to_form() == {api_name: value}


@pytest.mark.parametrize(
    ("given", "sent"),
    [
        (["completed"], "completed"),
        ("completed", "completed"),
        ("in-progress completed absent", "in-progress completed absent"),
        ("in-progress,completed", "in-progress completed"),
        (" absent ,  in-progress ", "absent in-progress"),
        (("absent", "completed"), "absent completed"),
        (["completed", "in-progress", "completed"], "completed in-progress"),
        ("absent absent,absent", "absent"),
    ],
)
def test_callback_events_are_space_separated_deduplicated_in_order(given, sent):
    params = StartRecordingParams.from_arguments(recording_status_callback_event=given)
    assert params.to_form() == {"RecordingStatusCallbackEvent": sent}


@pytest.mark.parametrize(
    "url", [CALLBACK, "http://127.0.0.1:8080/cb", "https://example.com", "https://example.com:8443/a/b"]
)
def test_http_callback_urls_are_sent_unchanged(url):
    form = StartRecordingParams.from_arguments(recording_status_callback=url).to_form()
    assert form == {"RecordingStatusCallback": url}


URL_EXPECTED = ("http://", "https://")
EVENT_EXPECTED = EVENTS


@pytest.mark.parametrize(
    ("argument", "value", "shown", "allowed"),
    [
        # Enum values are case-sensitive, as the API is.
        ("recording_channels", "stereo", "stereo", CHANNELS),
        ("recording_channels", "DUAL", "DUAL", CHANNELS),
        ("recording_channels", "", "", CHANNELS),
        ("recording_channels", 2, 2, CHANNELS),
        ("recording_track", "Both", "Both", TRACKS),
        ("recording_track", "all", "all", TRACKS),
        ("recording_status_callback_method", "post", "post", METHODS),
        ("recording_status_callback_method", "PUT", "PUT", METHODS),
        ("recording_status_callback", "ftp://example.com/cb", "ftp://example.com/cb", URL_EXPECTED),
        ("recording_status_callback", "example.com/cb", "example.com/cb", URL_EXPECTED),
        ("recording_status_callback", "/callbacks/recording", "/callbacks/recording", URL_EXPECTED),
        ("recording_status_callback", "http://", "http://", URL_EXPECTED),
        ("recording_status_callback", "https:///no-host", "https:///no-host", URL_EXPECTED),
        ("recording_status_callback", "", "", URL_EXPECTED),
        ("recording_status_callback", "   ", "   ", URL_EXPECTED),
        ("recording_status_callback", " https://example.com/cb", " https://example.com/cb", URL_EXPECTED),
        ("recording_status_callback_event", "started", "started", EVENT_EXPECTED),
        ("recording_status_callback_event", "Completed", "Completed", EVENT_EXPECTED),
        ("recording_status_callback_event", ["completed", "done"], "done", EVENT_EXPECTED),
        ("recording_status_callback_event", [], [], EVENT_EXPECTED),
        ("recording_status_callback_event", "", "", EVENT_EXPECTED),
        ("recording_status_callback_event", " , ", " , ", EVENT_EXPECTED),
        ("recording_status_callback_event", 7, 7, EVENT_EXPECTED),
        ("play_beep", "maybe", "maybe", ("True", "False")),
        ("play_beep", 2, 2, ("True", "False")),
        ("send_recording_url", "", "", ("True", "False")),
        ("send_recording_url", 1.0, 1.0, ("True", "False")),
    ],
)
def test_bad_values_are_refused_naming_argument_value_and_allowed(argument, value, shown, allowed):
    with pytest.raises(TelnyxValidationError) as caught:
        StartRecordingParams.from_arguments(**{argument: value})
    message = str(caught.value)
    assert argument in message
    assert repr(shown) in message
    for choice in allowed:
        assert choice in message
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, AirflowException)
    assert caught.value.argument == argument


@pytest.mark.parametrize(
    "arguments",
    [{"beep": True}, {"PlayBeep": True}, {"play_beep": True, "recording_format": "mp3"}],
)
def test_unknown_argument_names_are_refused(arguments):
    unknown = sorted(set(arguments) - set(ARGUMENT_NAMES))
    with pytest.raises(TelnyxValidationError) as caught:
        StartRecordingParams.from_arguments(**arguments)
    message = str(caught.value)
    for name in unknown:
        assert name in message
    # The message lists what is allowed, so the typo is easy to fix.
    for name in ARGUMENT_NAMES:
        assert name in message


@pytest.mark.parametrize(
    "value", [CALL_SID, "e9cea0be-7dbd-4b98-98b1-c0089d9d43b0", "61bf923e", "v3:a-b_c.d", "x"]
)
def test_require_identifier_returns_valid_sids_unchanged(value):
    assert require_identifier("call_sid", value) == value


@pytest.mark.parametrize(
    "value", ["", "  ", None, 12, "a/b", " x", "x ", "a b", "a?b", "a#b", "a\nb", "a\tb", ["x"]]
)
def test_require_identifier_refuses_non_identifiers(value):
    with pytest.raises(TelnyxValidationError) as caught:
        require_identifier("recording_sid", value)
    assert "recording_sid" in str(caught.value)
    assert repr(value) in str(caught.value)


@pytest.mark.parametrize(("value", "number"), [(1, 1.0), (0.5, 0.5), (30, 30.0), (1e-3, 0.001)])
def test_require_positive_number_returns_a_float(value, number):
    result = require_positive_number("timeout", value)
    assert result == number
    assert type(result) is float


@pytest.mark.parametrize("value", [0, 0.0, -1, -0.5, True, False, "5", None, float("nan"), [1]])
def test_require_positive_number_refuses_others(value):
    with pytest.raises(TelnyxValidationError) as caught:
        require_positive_number("timeout", value)
    assert "timeout" in str(caught.value)
    assert "greater than 0" in str(caught.value)


@pytest.mark.parametrize(
    "value",
    [
        ".",
        "..",
        "%2e",
        "%2e%2e",
        "%2E%2E",
        ".%2e",
        "%252e%252e",  # decoded twice by a proxy and then the server
        "a%2Fb",
        "a%2fb",
        "a%252Fb",
        "a\\b",
        "a%5Cb",
        "a%3Fb",
        "a%23b",
        "a%20b",
        "a%00b",
        "a%0Ab",
        "a\x00b",
        "a\x7fb",
        "a\u00a0b",  # a no-break space
    ],
)
def test_require_identifier_refuses_what_would_change_the_url_path(value):
    with pytest.raises(TelnyxValidationError) as caught:
        require_identifier("call_sid", value)
    assert "call_sid" in str(caught.value)
    assert "one URL path segment" in str(caught.value)


@pytest.mark.parametrize("value", ["...", ".a", "a.", "a..b", "v3:a.b", "50%", "a%zz", "%41"])
def test_require_identifier_accepts_dots_and_percents_that_stay_in_the_segment(value):
    assert require_identifier("call_sid", value) == value


def test_list_call_recordings_of_dot_dot_sends_nothing(requests_mock, monkeypatch):
    # ".." would collapse .../Calls/../Recordings.json into the account's whole recording list.
    import json

    from telnyx_provider.hooks.recording import RecordingHook

    monkeypatch.setenv(
        "AIRFLOW_CONN_TELNYX_DEFAULT",
        json.dumps({"conn_type": "telnyx", "login": "acct", "password": "KEY0123456789"}),
    )
    for sid in ("..", ".", "%2e%2e"):
        with pytest.raises(TelnyxValidationError):
            RecordingHook().list_call_recordings(sid)
    assert requests_mock.call_count == 0
