"""RecordingHook over requests-mock: iter_recordings with the DateCreated filter, and the transcriptions."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from telnyx_provider.errors import TelnyxApiError
from telnyx_provider.hooks.recording import RecordingHook
from telnyx_provider.retry import RetryPolicy
from tests.conftest import ACCOUNT_SID, MOCK_BASE_URL, SECRET_KEY

LIST_URL = f"{MOCK_BASE_URL}/texml/Accounts/{ACCOUNT_SID}/Recordings.json"
TRANSCRIPTIONS_URL = f"{MOCK_BASE_URL}/texml/Accounts/{ACCOUNT_SID}/Transcriptions.json"
TRANSCRIPTION = "6a09cdc3-8948-47f0-aa62-74ac943d6c58"
ONE_URL = f"{MOCK_BASE_URL}/texml/Accounts/{ACCOUNT_SID}/Transcriptions/{TRANSCRIPTION}.json"


@pytest.fixture
def hook(telnyx_conn):
    return RecordingHook(retry_policy=RetryPolicy(max_retries=0, max_wait=0.01, budget=5))


def _recording(sid: str, created: str) -> dict:
    return {"sid": sid, "status": "completed", "duration": "3", "date_created": created}


def _query(request) -> dict[str, list[str]]:
    return parse_qs(urlsplit(request.url).query)


def test_iter_recordings_filters_by_date_created_over_every_page(hook, requests_mock):
    pages = [
        {
            "json": {
                "recordings": [
                    _recording("a", "2024-01-02T00:00:00Z"),
                    _recording("b", "2024-01-03T00:00:00Z"),
                ],
                "next_page_uri": "/v2/x?Page=1",
            }
        },
        {
            # A service that ignores the filter would send older ones too: they are left out here.
            "json": {
                "recordings": [
                    _recording("c", "2023-12-31T23:59:59Z"),
                    _recording("d", "2024-01-05T00:00:00Z"),
                ],
                "next_page_uri": None,
            }
        },
    ]
    listing = requests_mock.get(LIST_URL, pages)

    sids = [r["sid"] for r in hook.iter_recordings(page_size=2, date_created_after="2024-01-01T00:00:00Z")]

    assert sids == ["a", "b", "d"]
    assert listing.call_count == 2
    for number, request in enumerate(listing.request_history):
        assert _query(request) == {
            "Page": [str(number)],
            "PageSize": ["2"],
            "DateCreated>": ["2024-01-01T00:00:00Z"],
        }
        assert "DateCreated%3E=2024-01-01T00%3A00%3A00Z" in request.url
        assert request.headers["Authorization"] == f"Bearer {SECRET_KEY}"


def test_iter_recordings_without_a_filter_sends_none(hook, requests_mock):
    listing = requests_mock.get(LIST_URL, json={"recordings": [_recording("a", "2020-01-01T00:00:00Z")]})
    assert [r["sid"] for r in hook.iter_recordings()] == ["a"]
    assert "DateCreated>" not in _query(listing.last_request)


def test_list_transcriptions_follows_page_tokens_and_filters_by_recording(hook, requests_mock):
    first = {
        "transcriptions": [
            {"sid": "t1", "recording_sid": "r1", "status": "completed"},
            {"sid": "t2", "recording_sid": "r2", "status": "completed"},
        ],
        "next_page_uri": f"/v2/texml/Accounts/{ACCOUNT_SID}/Transcriptions.json?PageToken=NEXT1&PageSize=2",
    }
    second = {"transcriptions": [{"sid": "t3", "recording_sid": "r1"}], "next_page_uri": None}
    listing = requests_mock.get(TRANSCRIPTIONS_URL, [{"json": first}, {"json": second}])

    found = hook.list_transcriptions(recording_sid="r1", page_size=2)

    assert [t["sid"] for t in found] == ["t1", "t3"]
    assert [_query(r).get("PageToken") for r in listing.request_history] == [None, ["NEXT1"]]


def test_list_transcriptions_stops_on_a_repeated_token(hook, requests_mock):
    page = {
        "transcriptions": [{"sid": "t1", "recording_sid": "r1"}],
        "next_page_uri": "/v2/x.json?PageToken=SAME",
    }
    listing = requests_mock.get(TRANSCRIPTIONS_URL, json=page)
    with pytest.raises(TelnyxApiError, match="repeats the page before it"):
        hook.list_transcriptions()  # not the same transcription twice
    assert listing.call_count == 2


def test_list_transcriptions_refuses_a_token_that_leads_back(hook, requests_mock):
    def page(sid: str, token: str) -> dict:
        return {"json": {"transcriptions": [{"sid": sid}], "next_page_uri": f"/v2/x.json?PageToken={token}"}}

    listing = requests_mock.get(TRANSCRIPTIONS_URL, [page("t1", "A"), page("t2", "B"), page("t3", "A")])
    with pytest.raises(TelnyxApiError, match="links to a page already read"):
        hook.list_transcriptions()
    assert listing.call_count == 3


def test_get_and_delete_transcription(hook, requests_mock):
    requests_mock.get(ONE_URL, json={"sid": TRANSCRIPTION, "transcription_text": "Hello", "duration": "4"})
    deleted = requests_mock.delete(ONE_URL, status_code=204)

    transcription = hook.get_transcription(TRANSCRIPTION)
    assert transcription["transcription_text"] == "Hello"
    assert transcription["duration"] == 4
    assert hook.delete_transcription(TRANSCRIPTION) is None
    assert deleted.call_count == 1


def test_a_missing_transcription_names_status_and_code(hook, requests_mock):
    requests_mock.get(
        ONE_URL,
        status_code=404,
        json={"errors": [{"code": "20404", "title": "Not found", "detail": "no such transcription"}]},
    )
    with pytest.raises(TelnyxApiError) as caught:
        hook.get_transcription(TRANSCRIPTION)
    assert caught.value.status == 404
    assert caught.value.code == "20404"
    assert "no such transcription" in str(caught.value)


def test_iter_recordings_between_two_moments_sends_both_bounds_and_drops_the_end(hook, requests_mock):
    listing = requests_mock.get(
        LIST_URL,
        json={
            "recordings": [
                _recording("in", "2024-01-01T23:59:59Z"),
                _recording("end", "2024-01-02T00:00:00Z"),  # the service's <= includes the bound
                _recording("before", "2023-12-31T23:59:59Z"),
            ]
        },
    )

    sids = [
        r["sid"]
        for r in hook.iter_recordings(
            date_created_after="2024-01-01", date_created_before="2024-01-02T00:00:00Z"
        )
    ]

    assert sids == ["in"]
    assert _query(listing.last_request) == {
        "DateCreated>": ["2024-01-01"],
        "DateCreated<": ["2024-01-02T00:00:00Z"],
        "Page": ["0"],
        "PageSize": ["50"],
    }
    assert "DateCreated%3C=2024-01-02T00%3A00%3A00Z" in listing.last_request.url
