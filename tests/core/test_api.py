"""Unit tests for telnyx_provider.api: building TeXML recording requests and reading the replies."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl

import httpx
import pytest
from requests.structures import CaseInsensitiveDict

from telnyx_provider import __version__, api
from telnyx_provider.errors import TelnyxApiError, TelnyxValidationError
from telnyx_provider.params import StartRecordingParams

ACCOUNT = "61bf923e-5e4d-4595-a110-56190ea18a1b"
CALL_SID = "v3:KBnLO0ZK3DhKM5s7bE9VluaSmKsOchKht_fUYvxcp8ysbmzCCtpkmA"
# RFC 3986: ':' is reserved, so as one path segment it is sent as %3A; letters, digits, '-' and '_' are not.
ENCODED_CALL = "v3%3A" + CALL_SID[3:]
RECORDING = "b08f0fa1-a32c-4218-b3b5-9cf78941ccac"
# Path templates from the OpenAPI spec's "paths".
CALL_RECORDINGS = "/texml/Accounts/{account_sid}/Calls/{call_sid}/Recordings.json"
CALL_RECORDING = "/texml/Accounts/{account_sid}/Calls/{call_sid}/Recordings/{recording_sid}.json"
ACCOUNT_RECORDINGS = "/texml/Accounts/{account_sid}/Recordings.json"
ACCOUNT_RECORDING = "/texml/Accounts/{account_sid}/Recordings/{recording_sid}.json"
IDS = {"account_sid": ACCOUNT, "call_sid": ENCODED_CALL, "recording_sid": RECORDING}

BUILDERS = {
    "start": lambda a, c, r: api.start_call_recording(a, c, StartRecordingParams()),
    "list_call": lambda a, c, r: api.list_call_recordings(a, c),
    "update": lambda a, c, r: api.update_call_recording(a, c, r, "paused"),
    "get": lambda a, c, r: api.get_recording(a, r),
    "delete": lambda a, c, r: api.delete_recording(a, r),
    "list": lambda a, c, r: api.list_recordings(a),
}


@pytest.mark.parametrize(
    ("builder", "method", "template", "idempotent"),
    [
        ("start", "POST", CALL_RECORDINGS, False),  # a repeat would start a second recording
        ("list_call", "GET", CALL_RECORDINGS, True),
        ("update", "POST", CALL_RECORDING, True),
        ("get", "GET", ACCOUNT_RECORDING, True),
        ("delete", "DELETE", ACCOUNT_RECORDING, True),
        ("list", "GET", ACCOUNT_RECORDINGS, True),
    ],
)
def test_builders_method_path_and_idempotence(builder, method, template, idempotent):
    request = BUILDERS[builder](ACCOUNT, CALL_SID, RECORDING)
    assert request.method == method
    assert request.path == template.format(**IDS)
    assert request.idempotent is idempotent


@pytest.mark.parametrize("bad", ["a b", "a/b", "", "  ", "x?y", "x#y", None])
@pytest.mark.parametrize(("builder", "position", "argument"), [
    ("start", 0, "account_sid"),
    ("start", 1, "call_sid"),
    ("list_call", 1, "call_sid"),
    ("update", 2, "recording_sid"),
    ("get", 2, "recording_sid"),
    ("delete", 0, "account_sid"),
    ("list", 0, "account_sid"),
])  # fmt: skip
def test_builders_refuse_ids_that_are_not_one_path_segment(builder, position, argument, bad):
    ids = [ACCOUNT, CALL_SID, RECORDING]
    ids[position] = bad
    with pytest.raises(TelnyxValidationError) as caught:
        BUILDERS[builder](*ids)
    assert caught.value.argument == argument


def test_start_body_is_form_encoded():
    params = StartRecordingParams.from_arguments(
        play_beep=True,
        recording_status_callback="https://example.com/cb?a=1&b=2",
        recording_status_callback_event="in-progress completed",
        recording_channels="dual",
    )
    request = api.start_call_recording(ACCOUNT, CALL_SID, params)
    body = request.body()
    assert body.startswith(b"PlayBeep=true&")
    assert b"RecordingStatusCallbackEvent=in-progress+completed" in body  # form encoding: space is '+'
    assert b"cb%3Fa%3D1%26b%3D2" in body  # the callback's own '?', '=' and '&' do not leak into the form
    assert dict(parse_qsl(body.decode("ascii"), strict_parsing=True)) == params.to_form()


@pytest.mark.parametrize("status", ["in-progress", "paused", "stopped"])  # the spec's Status enum
def test_update_sends_the_status_as_a_form(status):
    request = api.update_call_recording(ACCOUNT, CALL_SID, RECORDING, status)
    assert request.body() == f"Status={status}".encode()
    assert request.headers("k")["Content-Type"] == "application/x-www-form-urlencoded"


@pytest.mark.parametrize("status", ["PAUSED", "completed", "pause", "", None, "absent"])
def test_update_refuses_other_statuses(status):
    with pytest.raises(TelnyxValidationError) as caught:
        api.update_call_recording(ACCOUNT, CALL_SID, RECORDING, status)
    assert caught.value.argument == "status"
    assert "'paused'" in str(caught.value)


def test_empty_form_is_an_empty_body_with_a_content_type():
    request = api.start_call_recording(ACCOUNT, CALL_SID, StartRecordingParams())
    assert request.body() == b""
    assert request.headers("k")["Content-Type"] == "application/x-www-form-urlencoded"


@pytest.mark.parametrize("builder", ["list_call", "get", "delete", "list"])
def test_requests_without_form_have_no_body_and_no_content_type(builder):
    request = BUILDERS[builder](ACCOUNT, CALL_SID, RECORDING)
    assert request.body() is None
    assert "Content-Type" not in request.headers("k")


def test_headers_authenticate_and_name_the_provider():
    headers = BUILDERS["get"](ACCOUNT, CALL_SID, RECORDING).headers("KEY123")
    assert headers["Authorization"] == "Bearer KEY123"
    assert headers["Accept"] == "application/json"
    assert "airflow-provider-telnyx" in headers["User-Agent"]
    assert __version__ in headers["User-Agent"]
    assert [name for name, value in headers.items() if "KEY123" in value] == ["Authorization"]


@pytest.mark.parametrize(
    ("page", "page_size", "query"),
    [
        (None, None, {}),
        (0, None, {"Page": "0"}),  # page 0 is the first page (zero-indexed), not "unset"
        (None, 1, {"PageSize": "1"}),
        (3, 50, {"Page": "3", "PageSize": "50"}),
    ],
)
def test_list_recordings_query(page, page_size, query):
    assert api.list_recordings(ACCOUNT, page=page, page_size=page_size).query == query


GET = api.get_recording(ACCOUNT, RECORDING)
START = api.start_call_recording(ACCOUNT, CALL_SID, StartRecordingParams())
RAW = {"sid": RECORDING, "status": "completed", "duration": "12", "start_time": "11 Aug 2023 19:12:11 GMT"}


def test_parse_reply_returns_the_json_and_parse_recording_normalizes_it():
    assert api.parse_reply(GET, 200, {}, json.dumps(RAW).encode()) == RAW
    recording = api.parse_recording(GET, 200, {}, json.dumps(RAW).encode())
    assert recording["duration"] == 12
    assert recording["start_time"] == "2023-08-11T19:12:11+00:00"


@pytest.mark.parametrize(("status", "body"), [(204, b""), (200, b""), (200, b"  \n")])
def test_parse_reply_without_content_is_none(status, body):
    assert api.parse_reply(api.delete_recording(ACCOUNT, RECORDING), status, {}, body) is None


@pytest.mark.parametrize("status", [400, 404, 422, 500])
def test_telnyx_error_body_becomes_an_api_error(status):
    body = json.dumps({"errors": [{"code": 10015, "title": "Bad Request", "detail": "Bad status"}]})
    with pytest.raises(TelnyxApiError) as caught:
        api.parse_reply(GET, status, {}, body.encode())
    error = caught.value
    assert (error.status, error.code) == (status, "10015")  # a numeric code becomes a string
    assert (error.title, error.detail) == ("Bad Request", "Bad status")
    assert (error.method, error.path) == ("GET", GET.path)


def test_404_on_start_explains_the_likely_causes():
    body = b'{"errors": [{"detail": "Resource not found"}]}'  # the spec's ResourceNotFoundError example
    with pytest.raises(TelnyxApiError) as caught:
        api.parse_recording(START, 404, {}, body)
    for words in ("not found", "not live", "account_sid", "organization id"):
        assert words in caught.value.hint
    assert caught.value.hint in str(caught.value)
    with pytest.raises(TelnyxApiError) as caught:
        api.parse_recording(GET, 404, {}, body)
    assert "not live" not in str(caught.value)  # the hint is about starting a recording only


@pytest.mark.parametrize(("status", "word"), [(401, "API key"), (403, "permissions")])
def test_auth_errors_carry_a_hint(status, word):
    with pytest.raises(TelnyxApiError) as caught:
        api.parse_reply(GET, status, {}, b'{"errors": [{"title": "Unauthorized"}]}')
    assert word in caught.value.hint
    assert word in str(caught.value)


@pytest.mark.parametrize("parse", [api.parse_reply, api.parse_recording, api.parse_recording_page])
def test_html_200_reply_is_an_api_error_quoting_the_body(parse):
    body = b"<html><head><title>Captive portal</title></head>" + b"x" * 5000 + b"</html>"
    with pytest.raises(TelnyxApiError) as caught:
        parse(GET, 200, {}, body)
    message = str(caught.value)
    assert "HTTP 200" in message
    assert "<html><head><title>Captive portal" in message
    assert len(message) < 600  # the start of the body, not all of it


@pytest.mark.parametrize("body", [b'{"status": "completed"}', b'{"sid": 5}', b"[]", b"null", b'"text"', b""])
def test_reply_that_is_not_a_recording_is_an_api_error(body):
    with pytest.raises(TelnyxApiError) as caught:
        api.parse_recording(GET, 200, {}, body)
    assert caught.value.status == 200
    assert "sid" in str(caught.value)


@pytest.mark.parametrize("body", [b"{}", b'{"recordings": {}}', b'{"recordings": [1]}', b"[]", b""])
def test_page_that_is_not_a_list_of_recordings_is_an_api_error(body):
    with pytest.raises(TelnyxApiError):
        api.parse_recording_page(api.list_recordings(ACCOUNT), 200, {}, body)


def test_page_recordings_are_normalized_and_page_fields_kept():
    body = json.dumps({"page": 0, "next_page_uri": None, "recordings": [RAW, {**RAW, "sid": "r2"}]})
    page = api.parse_recording_page(api.list_recordings(ACCOUNT), 200, {}, body.encode())
    assert page["page"] == 0
    assert "next_page_uri" in page
    assert [item["sid"] for item in page["recordings"]] == [RECORDING, "r2"]
    assert {item["duration"] for item in page["recordings"]} == {12}


@pytest.mark.parametrize(
    ("body", "shown"),
    [
        (b"<html><body><h1>502 Bad Gateway</h1></body></html>", "<h1>502 Bad Gateway</h1>"),
        (b"null", "null"),
        (b"[]", "[]"),
        (b'{"errors": []}', '{"errors": []}'),
        (b'{"errors": "Bad Gateway"}', "Bad Gateway"),
        (b'{"errors": ["Bad Gateway"]}', "Bad Gateway"),
        (b"\xff\xfe Bad Gateway", "Bad Gateway"),
        (b"", "HTTP 502"),
    ],
)
def test_unreadable_error_body_is_quoted(body, shown):
    with pytest.raises(TelnyxApiError) as caught:
        api.parse_reply(GET, 502, {}, body)
    assert caught.value.status == 502
    assert "HTTP 502" in str(caught.value)
    assert shown in str(caught.value)


@pytest.mark.parametrize(
    "headers",
    [
        {"Retry-After": "7", "X-RateLimit-Reset": "30", "Set-Cookie": "s=1", "Content-Type": "text/plain"},
        CaseInsensitiveDict({"Retry-After": "7", "X-Ratelimit-Reset": "30", "Server": "x"}),
        httpx.Headers({"Retry-After": "7", "X-RATELIMIT-RESET": "30", "Via": "proxy"}),
    ],
    ids=["dict", "requests", "httpx"],
)
def test_retry_headers_are_kept_with_lower_case_names(headers):
    with pytest.raises(TelnyxApiError) as caught:
        api.parse_reply(GET, 429, headers, b'{"errors": [{"title": "Too Many Requests"}]}')
    assert caught.value.headers == {"retry-after": "7", "x-ratelimit-reset": "30"}
