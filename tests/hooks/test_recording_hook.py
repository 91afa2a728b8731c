"""RecordingHook over a mocked transport (requests-mock): request shape, replies, errors, retries."""

from __future__ import annotations

import json
import logging
from urllib.parse import parse_qs

import pytest
import requests

from telnyx_provider import __version__
from telnyx_provider.errors import TelnyxApiError, TelnyxValidationError
from telnyx_provider.hooks.recording import RecordingHook
from telnyx_provider.retry import RetryPolicy
from tests.conftest import ACCOUNT_SID, MOCK_BASE_URL, SECRET_KEY

CALL_SID = "v3:KBnLO0ZK3DhKM5s7bE9VluaSmKsOchKht_fUYvxcp8ysbmzCCtpkmA"
ENCODED_CALL = "v3%3AKBnLO0ZK3DhKM5s7bE9VluaSmKsOchKht_fUYvxcp8ysbmzCCtpkmA"
RECORDING_SID = "b08f0fa1-a32c-4218-b3b5-9cf78941ccac"
START_URL = f"{MOCK_BASE_URL}/texml/Accounts/{ACCOUNT_SID}/Calls/{ENCODED_CALL}/Recordings.json"
GET_URL = f"{MOCK_BASE_URL}/texml/Accounts/{ACCOUNT_SID}/Recordings/{RECORDING_SID}.json"

DOCS_REPLY = {
    "account_sid": ACCOUNT_SID,
    "call_sid": CALL_SID,
    "conference_sid": None,
    "channels": 1,
    "date_created": "Fri, 11 Aug 2023 19:12:11 +0000",
    "date_updated": "Fri, 11 Aug 2023 19:12:11 +0000",
    "start_time": "Fri, 11 Aug 2023 19:12:11 +0000",
    "price": "0.10",
    "price_unit": "USD",
    "duration": "12",
    "sid": RECORDING_SID,
    "source": "StartCallRecordingAPI",
    "error_code": None,
    "track": "inbound",
    "uri": f"/v2/texml/Accounts/{ACCOUNT_SID}/Calls/{CALL_SID}/Recordings/{RECORDING_SID}.json",
    "future_field": {"kept": True},
}

FAST = RetryPolicy(max_retries=3, max_wait=0.01, budget=5, initial_wait=0.001)


EMPTY_PAGE = {"recordings": [], "page": 0, "page_size": 100, "next_page_uri": None}


@pytest.fixture
def hook(telnyx_conn):
    return RecordingHook(retry_policy=FAST, adoption_wait=0.2)


@pytest.fixture
def call_without_recordings(requests_mock):
    """The call's recording list (read before every start, the snapshot) is empty."""
    requests_mock.get(START_URL, json=EMPTY_PAGE)


def _form(request) -> dict[str, list[str]]:
    return parse_qs(request.text or "", keep_blank_values=True)


def test_hook_contract_names():
    assert RecordingHook.conn_type == "telnyx"
    assert RecordingHook.conn_name_attr == "telnyx_conn_id"
    assert RecordingHook.default_conn_name == "telnyx_default"


def test_start_sends_form_bearer_and_encoded_path(hook, requests_mock, call_without_recordings):
    requests_mock.post(START_URL, json=DOCS_REPLY)
    recording = hook.start_call_recording(
        CALL_SID,
        play_beep=False,
        recording_status_callback="https://example.com/cb",
        recording_status_callback_event=["in-progress", "completed", "absent"],
        recording_status_callback_method="GET",
        recording_channels="single",
        recording_track="inbound",
        send_recording_url=False,
    )
    sent = requests_mock.last_request
    assert sent.method == "POST"
    assert ENCODED_CALL in sent.path or ENCODED_CALL.lower() in sent.path
    assert sent.headers["Authorization"] == f"Bearer {SECRET_KEY}"
    assert sent.headers["Accept"] == "application/json"
    assert sent.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert sent.headers["User-Agent"] == f"airflow-provider-telnyx/{__version__}"
    assert _form(sent) == {
        "PlayBeep": ["false"],
        "RecordingStatusCallback": ["https://example.com/cb"],
        "RecordingStatusCallbackEvent": ["in-progress completed absent"],
        "RecordingStatusCallbackMethod": ["GET"],
        "RecordingChannels": ["single"],
        "RecordingTrack": ["inbound"],
        "SendRecordingUrl": ["false"],
    }
    assert recording["sid"] == RECORDING_SID
    assert recording["duration"] == 12
    assert recording["start_time"] == "2023-08-11T19:12:11+00:00"
    assert recording["future_field"] == {"kept": True}
    json.dumps(recording)  # goes to XCom


def test_start_leaves_unset_parameters_out(hook, requests_mock, call_without_recordings):
    requests_mock.post(START_URL, json=DOCS_REPLY)
    hook.start_call_recording(CALL_SID, play_beep=True)
    assert _form(requests_mock.last_request) == {"PlayBeep": ["true"]}


def test_start_without_parameters_sends_an_empty_form(hook, requests_mock, call_without_recordings):
    requests_mock.post(START_URL, json=DOCS_REPLY)
    hook.start_call_recording(CALL_SID)
    sent = requests_mock.last_request
    assert not sent.body
    assert sent.headers["Content-Type"] == "application/x-www-form-urlencoded"


def test_account_sid_argument_overrides_the_connection(hook, requests_mock):
    other = "00000000-0000-0000-0000-000000000001"
    requests_mock.get(
        f"{MOCK_BASE_URL}/texml/Accounts/{other}/Recordings/{RECORDING_SID}.json", json=DOCS_REPLY
    )
    hook.get_recording(RECORDING_SID, account_sid=other)
    assert requests_mock.call_count == 1


def test_get_recording_parses_iso_dates_too(hook, requests_mock):
    reply = {**DOCS_REPLY, "date_created": "2023-08-11T19:12:11Z", "duration": None, "status": "in-progress"}
    requests_mock.get(GET_URL, json=reply)
    recording = hook.get_recording(RECORDING_SID)
    assert recording["date_created"] == "2023-08-11T19:12:11+00:00"
    assert recording["duration"] is None


@pytest.mark.parametrize(
    "bad", [{"play_beep": "maybe"}, {"recording_channels": "stereo"}, {"recording_track": "Both"}]
)
def test_bad_parameters_are_refused_before_any_request(hook, requests_mock, bad):
    with pytest.raises(TelnyxValidationError):
        hook.start_call_recording(CALL_SID, **bad)
    assert requests_mock.call_count == 0


def test_start_404_explains_call_and_account(hook, requests_mock, call_without_recordings):
    requests_mock.post(
        START_URL,
        status_code=404,
        json={"errors": [{"code": "10005", "title": "Resource not found", "detail": "Call not found"}]},
    )
    with pytest.raises(TelnyxApiError) as raised:
        hook.start_call_recording(CALL_SID)
    error = raised.value
    assert (error.status, error.code, error.title, error.detail) == (
        404,
        "10005",
        "Resource not found",
        "Call not found",
    )
    assert error.method == "POST"
    assert "not live" in str(error)
    assert "organization id" in str(error)
    assert [r.method for r in requests_mock.request_history] == ["GET", "POST"]  # 404 is not retried
    assert SECRET_KEY not in str(error)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_errors_are_not_retried(hook, requests_mock, status):
    requests_mock.get(
        GET_URL, status_code=status, json={"errors": [{"code": "1", "title": "t", "detail": "d"}]}
    )
    with pytest.raises(TelnyxApiError) as raised:
        hook.get_recording(RECORDING_SID)
    assert raised.value.status == status
    assert requests_mock.call_count == 1


def test_429_is_retried_after_the_wait_asked(hook, requests_mock, caplog):
    requests_mock.get(
        GET_URL,
        [
            {"status_code": 429, "headers": {"Retry-After": "0"}, "json": {"errors": [{"code": "10011"}]}},
            {"status_code": 503, "text": "<html>busy</html>"},
            {"json": DOCS_REPLY},
        ],
    )
    with caplog.at_level(logging.WARNING, logger="telnyx_provider"):
        assert hook.get_recording(RECORDING_SID)["sid"] == RECORDING_SID
    assert requests_mock.call_count == 3
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "HTTP 429" in warnings[0].getMessage()
    assert "HTTP 503" in warnings[1].getMessage()


def test_connection_errors_are_retried_then_reported_without_the_key(hook, requests_mock):
    requests_mock.get(GET_URL, exc=requests.ConnectionError("connection reset by peer"))
    with pytest.raises(TelnyxApiError) as raised:
        hook.get_recording(RECORDING_SID)
    assert requests_mock.call_count == FAST.max_retries + 1
    assert raised.value.status is None
    assert "ConnectionError" in str(raised.value)
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__
    assert SECRET_KEY not in repr(raised.value)


def test_lost_start_reply_of_a_both_track_start_adopts_the_sole_new_match(hook, requests_mock):
    active = {**DOCS_REPLY, "status": "in-progress", "duration": None}  # single channel; no track field
    active.pop("track", None)
    requests_mock.post(START_URL, exc=requests.ConnectionError("reset"))
    requests_mock.get(START_URL, [{"json": EMPTY_PAGE}, {"json": {**EMPTY_PAGE, "recordings": [active]}}])
    recording = hook.start_call_recording(CALL_SID, recording_channels="single", recording_track="both")
    assert recording["sid"] == RECORDING_SID
    methods = [request.method for request in requests_mock.request_history]
    assert methods == ["GET", "POST", "GET"]  # snapshot, start (reply lost), look: adopted


def test_lost_start_reply_of_a_one_track_start_never_adopts_a_new_match(hook, requests_mock):
    # The call gets a recording from another start (its track is not in the list: the schema has none);
    # ours asked for the outbound track and its reply was lost. It may be ours or the other's: named.
    from telnyx_provider.errors import AmbiguousStartError

    other = {**DOCS_REPLY, "status": "in-progress", "duration": None}
    other.pop("track", None)
    requests_mock.post(START_URL, exc=requests.ConnectionError("reset"))
    requests_mock.get(START_URL, [{"json": EMPTY_PAGE}, {"json": {**EMPTY_PAGE, "recordings": [other]}}])
    with pytest.raises(AmbiguousStartError, match=RECORDING_SID):
        hook.start_call_recording(CALL_SID, recording_channels="single", recording_track="outbound")
    assert [r.method for r in requests_mock.request_history].count("POST") == 1


def test_lost_start_reply_never_adopts_a_recording_older_than_the_start(hook, requests_mock):
    # Same parameters, started a second before this start (it is in the snapshot): never adopted, and
    # the start is not sent again (it may have gone through).
    from telnyx_provider.errors import UncertainStartError

    older = {**DOCS_REPLY, "status": "in-progress", "duration": None}
    listing = {**EMPTY_PAGE, "recordings": [older]}
    requests_mock.post(START_URL, exc=requests.ConnectionError("reset"))
    requests_mock.get(START_URL, json=listing)
    with pytest.raises(UncertainStartError, match="may have gone through") as raised:
        hook.start_call_recording(CALL_SID, recording_channels="single", recording_track="both")
    assert RECORDING_SID in str(raised.value)  # what was seen on the call is named
    assert [r.method for r in requests_mock.request_history].count("POST") == 1


def test_lost_start_reply_with_two_matching_new_recordings_names_both(hook, requests_mock):
    from telnyx_provider.errors import AmbiguousStartError

    first = {**DOCS_REPLY, "status": "in-progress", "duration": None}
    second = {**first, "sid": "second"}
    requests_mock.post(START_URL, exc=requests.ConnectionError("reset"))
    requests_mock.get(
        START_URL, [{"json": EMPTY_PAGE}, {"json": {**EMPTY_PAGE, "recordings": [first, second]}}]
    )
    with pytest.raises(AmbiguousStartError) as raised:
        hook.start_call_recording(CALL_SID, recording_channels="single", recording_track="inbound")
    assert RECORDING_SID in str(raised.value)
    assert "second" in str(raised.value)
    assert [r.method for r in requests_mock.request_history].count("POST") == 1  # never sent again


def test_the_snapshot_reads_every_page_of_the_call(hook, requests_mock):
    # The call already has a matching recording, on the list's second page: it is not this start's.
    older = {**DOCS_REPLY, "status": "in-progress", "duration": None}
    page0 = {**EMPTY_PAGE, "recordings": [{**older, "sid": "x"}], "next_page_uri": "/next"}
    page1 = {**EMPTY_PAGE, "page": 1, "recordings": [older]}
    ours = {**older, "sid": "ours"}
    requests_mock.post(START_URL, [{"exc": requests.ConnectTimeout("never sent")}, {"json": ours}])
    requests_mock.get(START_URL, [{"json": page0}, {"json": page1}])
    recording = hook.start_call_recording(CALL_SID, recording_channels="single", recording_track="inbound")
    assert recording["sid"] == "ours"
    pages = [r.qs.get("page") for r in requests_mock.request_history if r.method == "GET"]
    assert pages[:2] == [["0"], ["1"]]


def test_test_connection_reports_success_and_failure(hook, requests_mock):
    page_url = f"{MOCK_BASE_URL}/texml/Accounts/{ACCOUNT_SID}/Recordings.json"
    requests_mock.get(page_url, json={"recordings": [], "page": 0})
    ok, message = hook.test_connection()
    assert ok, message
    assert requests_mock.last_request.qs == {"pagesize": ["1"]}
    requests_mock.get(
        page_url, status_code=401, json={"errors": [{"code": "10009", "title": "Authentication failed"}]}
    )
    ok, message = RecordingHook(retry_policy=FAST).test_connection()
    assert not ok
    assert "401" in message
    assert "10009" in message
    assert SECRET_KEY not in message


def test_missing_api_key_is_refused(monkeypatch, requests_mock):
    monkeypatch.setenv(
        "AIRFLOW_CONN_TELNYX_DEFAULT",
        json.dumps({"conn_type": "telnyx", "host": MOCK_BASE_URL, "login": "a"}),
    )
    with pytest.raises(TelnyxValidationError, match="API key"):
        RecordingHook().get_recording(RECORDING_SID)
    assert requests_mock.call_count == 0


def test_reading_the_connection_masks_the_key(hook, monkeypatch):
    masked: list[str] = []
    monkeypatch.setattr("telnyx_provider.connection.mask_secret", masked.append)
    assert hook.config.api_key == SECRET_KEY
    assert masked == [SECRET_KEY]
    assert SECRET_KEY not in repr(hook.config)


def test_iter_recordings_follows_pages(hook, requests_mock):
    page_url = f"{MOCK_BASE_URL}/texml/Accounts/{ACCOUNT_SID}/Recordings.json"
    requests_mock.get(
        page_url,
        [
            {"json": {"recordings": [DOCS_REPLY], "next_page_uri": "/next"}},
            {"json": {"recordings": [{**DOCS_REPLY, "sid": "second"}], "next_page_uri": None}},
        ],
    )
    assert [r["sid"] for r in hook.iter_recordings(page_size=1)] == [RECORDING_SID, "second"]
    assert [r.qs["page"] for r in requests_mock.request_history] == [["0"], ["1"]]


def test_a_delete_whose_reply_was_lost_is_done_when_the_retry_finds_it_gone(hook, requests_mock, caplog):
    requests_mock.delete(
        GET_URL, [{"exc": requests.ConnectionError("reset")}, {"status_code": 404, "json": {}}]
    )
    hook.delete_recording(RECORDING_SID)  # no error: the first attempt deleted it
    assert requests_mock.call_count == 2
    assert any("earlier attempt" in record.getMessage() for record in caplog.records)


def test_a_delete_of_an_unknown_recording_fails(hook, requests_mock):
    requests_mock.delete(
        GET_URL, status_code=404, json={"errors": [{"code": "10005", "detail": "not found"}]}
    )
    with pytest.raises(TelnyxApiError) as raised:
        hook.delete_recording(RECORDING_SID)
    assert raised.value.status == 404
