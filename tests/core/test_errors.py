"""Unit tests for telnyx_provider.errors: messages, and pickling (Airflow ships errors between processes)."""

from __future__ import annotations

import pickle

import pytest

from telnyx_provider._compat import AirflowException, AirflowFailException
from telnyx_provider.errors import (
    RecordingFailedError,
    TelnyxApiError,
    TelnyxValidationError,
    transport_detail,
)

FIELDS = {
    "status": 404,
    "method": "POST",
    "path": "/texml/Accounts/acct-1/Calls/v3%3Aabc/Recordings.json",
    "code": "20100",
    "title": "Call not found",
    "detail": "The requested call was not found.",
    "hint": "Check the call is still live.",
    "headers": {"retry-after": "3"},
}
PROTOCOLS = range(pickle.HIGHEST_PROTOCOL + 1)


def test_api_error_message_names_everything():
    message = str(TelnyxApiError(**FIELDS))
    for name in ("method", "path", "code", "title", "detail", "hint"):
        assert FIELDS[name] in message, name
    assert "HTTP 404" in message
    assert message.endswith(FIELDS["hint"])  # the advice comes last


def test_api_error_without_reply_says_so():
    error = TelnyxApiError(status=None, method="GET", path="/x", detail="ConnectError: refused")
    assert "no reply" in str(error)
    assert "ConnectError: refused" in str(error)
    assert "None" not in str(error)


def test_api_error_with_only_a_status():
    error = TelnyxApiError(status=500, method="DELETE", path="/r.json")
    assert str(error) == "Telnyx API error: HTTP 500 on DELETE /r.json"
    assert (error.code, error.title, error.detail, error.hint, error.headers) == (None, None, None, None, {})


def test_api_error_is_an_airflow_exception_and_copies_headers():
    headers = {"retry-after": "3"}
    error = TelnyxApiError(status=429, method="GET", path="/x", headers=headers)
    headers["retry-after"] = "999"
    assert error.headers == {"retry-after": "3"}  # not tied to the caller's mapping
    assert isinstance(error, AirflowException)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(
    "fields",
    [FIELDS, {"status": None, "method": "GET", "path": "/x", "detail": "ReadTimeout"}],
    ids=["full", "no-reply"],
)
def test_api_error_pickle_round_trip(fields, protocol):
    error = TelnyxApiError(**fields)
    copy = pickle.loads(pickle.dumps(error, protocol=protocol))
    assert type(copy) is TelnyxApiError
    assert str(copy) == str(error)
    assert copy.args == error.args
    for name in FIELDS:
        assert getattr(copy, name) == getattr(error, name), name


def test_api_error_pickles_after_being_raised():
    try:
        raise TelnyxApiError(**FIELDS)
    except TelnyxApiError as raised:
        copy = pickle.loads(pickle.dumps(raised))
    assert str(copy) == str(TelnyxApiError(**FIELDS))


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(
    ("argument", "value", "expected"),
    [
        ("recording_channels", "DUAL", "one of 'single', 'dual'"),
        ("arguments", ["beep"], "names among ['play_beep']"),
        ("account_sid", None, "an account SID"),
    ],
)
def test_validation_error_pickle_round_trip(argument, value, expected, protocol):
    error = TelnyxValidationError(argument, value, expected)
    copy = pickle.loads(pickle.dumps(error, protocol=protocol))
    assert type(copy) is TelnyxValidationError
    assert (copy.argument, copy.value, copy.expected) == (argument, value, expected)
    assert str(copy) == str(error)


def test_validation_error_message_and_types():
    error = TelnyxValidationError("recording_track", "Both", "one of 'inbound', 'outbound', 'both'")
    assert "recording_track" in str(error)
    assert "'Both'" in str(error)
    assert "'both'" in str(error)
    assert isinstance(error, ValueError)
    assert isinstance(error, AirflowException)


def test_recording_failed_error_fails_the_task_without_retry():
    # AirflowFailException is what tells Airflow not to retry the task.
    assert issubclass(RecordingFailedError, AirflowFailException)


@pytest.mark.parametrize(
    ("error", "detail"),
    [
        (ConnectionError("connection\n   reset by peer"), "ConnectionError: connection reset by peer"),
        (TimeoutError(), "TimeoutError"),
        (OSError("x" * 500), "OSError: " + "x" * 200),
    ],
)
def test_transport_detail(error, detail):
    assert transport_detail(error) == detail
