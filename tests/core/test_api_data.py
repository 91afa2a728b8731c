"""The core's new requests: the ``DateCreated`` filter, the transcription endpoints and the media GET."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone

import pytest

from telnyx_provider import api, media_api
from telnyx_provider.errors import TelnyxApiError, TelnyxValidationError
from telnyx_provider.params import format_date_filter

ACCOUNT = "61bf923e-5e4d-4595-a110-56190ea18a1b"
TRANSCRIPTION = "6a09cdc3-8948-47f0-aa62-74ac943d6c58"
BASE = "https://api.telnyx.com/v2"
KEY = "KEYsecret_core_test_0123456789"


@pytest.mark.parametrize(
    ("value", "sent"),
    [
        (datetime(2023, 5, 22, 10, 0, tzinfo=timezone.utc), "2023-05-22T10:00:00Z"),
        (datetime(2023, 5, 22, 12, 30, 5, 999, tzinfo=timezone(timedelta(hours=2))), "2023-05-22T10:30:05Z"),
        (date(2023, 5, 22), "2023-05-22"),
        ("2023-05-22", "2023-05-22"),
        ("2023-05-22T12:00:00+02:00", "2023-05-22T10:00:00Z"),
        ("2023-05-22T10:00:00Z", "2023-05-22T10:00:00Z"),
    ],
)
def test_list_recordings_sends_the_date_created_filter_in_the_specs_format(value, sent):
    request = api.list_recordings(ACCOUNT, page=0, page_size=10, date_created_after=value)
    # The spec: "DateCreated>=2023-05-22" (the key is ``DateCreated>``, ``=`` separates the value).
    assert request.query == {"Page": "0", "PageSize": "10", "DateCreated>": sent}


def test_list_recordings_without_a_filter_sends_none():
    assert "DateCreated>" not in api.list_recordings(ACCOUNT).query


@pytest.mark.parametrize(
    "bad",
    [datetime(2023, 5, 22, 10, 0), "yesterday", "2023-13-01", 20230522, "", True],  # naive: a guess
)
def test_a_bad_date_filter_is_refused(bad):
    with pytest.raises(TelnyxValidationError, match="date_created_after"):
        api.list_recordings(ACCOUNT, date_created_after=bad)


def test_created_since_keeps_recordings_at_or_after_the_bound():
    check = api.created_since("2023-05-22T10:00:00Z")
    assert check({"date_created": "2023-05-22T10:00:00+00:00"})
    assert check({"date_created": "2023-05-22T12:00:01+02:00"})
    assert not check({"date_created": "2023-05-22T11:59:59+02:00"})
    assert check({"date_created": None})  # unreadable: the service filtered already
    by_day = api.created_since(date(2023, 5, 22))
    assert by_day({"date_created": "2023-05-22T00:00:00+00:00"})
    assert not by_day({"date_created": "2023-05-21T23:59:59+00:00"})


def test_format_date_filter_names_the_argument():
    with pytest.raises(TelnyxValidationError, match="since"):
        format_date_filter("since", "not a date")


@pytest.mark.parametrize(
    ("request_", "method", "path"),
    [
        (api.list_transcriptions(ACCOUNT), "GET", f"/texml/Accounts/{ACCOUNT}/Transcriptions.json"),
        (
            api.get_transcription(ACCOUNT, TRANSCRIPTION),
            "GET",
            f"/texml/Accounts/{ACCOUNT}/Transcriptions/{TRANSCRIPTION}.json",
        ),
        (
            api.delete_transcription(ACCOUNT, TRANSCRIPTION),
            "DELETE",
            f"/texml/Accounts/{ACCOUNT}/Transcriptions/{TRANSCRIPTION}.json",
        ),
    ],
)
def test_transcription_requests_follow_the_spec(request_, method, path):
    assert (request_.method, request_.path, request_.idempotent) == (method, path, True)


def test_list_transcriptions_pages_by_token():
    request = api.list_transcriptions(ACCOUNT, page_size=5, page_token="KRWXZPO")
    assert request.query == {"PageSize": "5", "PageToken": "KRWXZPO"}
    with pytest.raises(TelnyxValidationError, match="page_size"):
        api.list_transcriptions(ACCOUNT, page_size=0)
    with pytest.raises(TelnyxValidationError, match="transcription_sid"):
        api.get_transcription(ACCOUNT, "a/b")


def test_next_page_token_reads_the_next_page_uri():
    uri = f"/v2/texml/Accounts/{ACCOUNT}/Transcriptions.json?PageToken=KRWXZPO&PageSize=1"
    assert api.next_page_token({"next_page_uri": uri}) == "KRWXZPO"
    assert api.next_page_token({"next_page_uri": None}) is None
    assert api.next_page_token({"next_page_uri": "/v2/x.json?PageSize=1"}) is None
    assert api.next_page_token({}) is None


def test_transcription_replies_are_parsed_and_dates_normalized():
    request = api.get_transcription(ACCOUNT, TRANSCRIPTION)
    body = {
        "sid": TRANSCRIPTION,
        "recording_sid": "r1",
        "status": "completed",
        "duration": "12",
        "date_created": "Fri, 11 Aug 2023 19:12:11 +0000",
        "transcription_text": "Good morning",
    }
    parsed = api.parse_transcription(request, 200, {}, json.dumps(body).encode())
    assert parsed["date_created"] == "2023-08-11T19:12:11+00:00"
    assert parsed["duration"] == 12
    assert parsed["transcription_text"] == "Good morning"
    page = api.parse_transcription_page(
        api.list_transcriptions(ACCOUNT), 200, {}, json.dumps({"transcriptions": [body]}).encode()
    )
    assert page["transcriptions"][0]["duration"] == 12
    with pytest.raises(TelnyxApiError, match="not a list of transcriptions"):
        api.parse_transcription_page(api.list_transcriptions(ACCOUNT), 200, {}, b'{"recordings": []}')
    with pytest.raises(TelnyxApiError, match="not a transcription"):
        api.parse_transcription(request, 200, {}, b"{}")


@pytest.mark.parametrize(
    ("media_url", "own"),
    [
        ("https://api.telnyx.com/v2/media/r.wav", True),
        ("https://API.TELNYX.COM:443/other/r.wav", True),
        ("https://api.telnyx.com:444/v2/media/r.wav", False),
        ("http://api.telnyx.com/v2/media/r.wav", False),
        ("https://s3.amazonaws.com/bucket/r.wav?X-Amz-Signature=abc", False),
        ("https://api.telnyx.com.attacker.example/r.wav", False),
    ],
)
def test_media_request_sends_the_key_only_to_the_apis_own_origin(media_url, own):
    request = media_api.media_request("r", media_url, base_url=BASE, api_key=KEY)
    assert ("Authorization" in request.headers) is own
    assert request.headers["User-Agent"] == api.USER_AGENT
    assert KEY not in repr(request)
    assert media_url not in repr(request)


@pytest.mark.parametrize("bad", [None, "", "ftp://host/r.wav", "/relative/r.wav", "https://", 12])
def test_media_request_refuses_a_missing_or_unusable_link_without_quoting_it(bad):
    with pytest.raises(TelnyxApiError, match="no http") as caught:
        media_api.media_request("rec-1", bad, base_url=BASE, api_key=KEY)
    assert "rec-1" in str(caught.value)
    if isinstance(bad, str) and bad:
        assert bad not in str(caught.value)


def test_media_error_names_status_and_code_but_never_the_link():
    link = (
        "https://bucket.s3.amazonaws.com/rec/r.wav?X-Amz-Credential=CRED12345678&X-Amz-Signature=SIG123456789"
    )
    request = media_api.media_request("rec-1", link, base_url=BASE, api_key=KEY)
    body = json.dumps({"errors": [{"code": "10007", "title": "Expired", "detail": f"link {link} expired"}]})
    error = media_api.media_error(request, 403, {"Retry-After": "3"}, body.encode())
    text = str(error)
    assert "HTTP 403" in text
    assert "10007" in text
    assert "rec-1" in text
    assert "bucket.s3.amazonaws.com" in text
    for secret in ("SIG123456789", "CRED12345678", "/rec/r.wav"):
        assert secret not in text
    assert error.headers == {"retry-after": "3"}
    assert media_api.media_error(request, 500, {}, b"").hint is None


def test_redact_link_removes_the_link_its_path_and_long_query_values():
    link = "https://h.example/a/b.wav?token=abcdefgh123&x=1"
    text = f"GET {link} failed; path /a/b.wav?token=abcdefgh123&x=1; token abcdefgh123"
    redacted = media_api.redact_link(text, link)
    assert "abcdefgh123" not in redacted
    assert "/a/b.wav" not in redacted
    assert redacted.startswith("GET *** failed")
