"""Listings that repeat a page or never end: every paging loop stops with a clear error, over real HTTP.

The far end is a scripted loopback server (``tests/scripted_api.py``). A page that repeats the previous
one is what Stoplight Prism serving Telnyx's spec answers to every page (its example has a
``next_page_uri``); a service that ignores ``Page`` does the same. The scripts end after a few repeats, so
a loop that does not notice the repeat returns duplicates (and the test fails) rather than hanging.
"""

from __future__ import annotations

import pytest

from telnyx_provider.connection import TelnyxConnectionConfig
from telnyx_provider.errors import TelnyxApiError
from telnyx_provider.hooks.recording import CALL_PAGE_SIZE, RecordingHook
from telnyx_provider.hooks.recording_async import AsyncRecordingClient
from telnyx_provider.hooks.recording_start import SNAPSHOT_MAX_PAGES
from telnyx_provider.pages import PageGuard
from telnyx_provider.retry import RetryPolicy
from tests.conftest import ACCOUNT_SID, SECRET_KEY
from tests.scripted_api import Reply

CALL_SID = "v3:KBnLO0ZK3DhKM5s7bE9VluaSmKsOchKht_fUYvxcp8ysbmzCCtpkmA"
CALL_PATH = f"/texml/Accounts/{ACCOUNT_SID}/Calls/{CALL_SID.replace(':', '%3A')}/Recordings.json"
ACCOUNT_PATH = f"/texml/Accounts/{ACCOUNT_SID}/Recordings.json"
TRANSCRIPTIONS_PATH = f"/texml/Accounts/{ACCOUNT_SID}/Transcriptions.json"
NO_RETRY = RetryPolicy(max_retries=0, max_wait=0.01, budget=5)


def _page(number: int, sids: list[str], *, last: bool = False, key: str = "recordings") -> Reply:
    body = {
        key: [{"sid": sid, "status": "completed", "duration": "3", "recording_sid": sid} for sid in sids],
        "page": number,
        "page_size": len(sids),
        "uri": f"/v2{ACCOUNT_PATH}?Page={number}",
    }
    if not last:
        body["next_page_uri"] = f"/v2{ACCOUNT_PATH}?Page={number + 1}&PageToken=tok{number + 1}"
    return Reply(200, body)


def _spec_example_pages(repeats: int = 5, key: str = "recordings") -> list[Reply]:
    """What Prism answers: the same page (number 0, one item, a next page) every time; here it ends."""
    return [_page(0, ["e9cea0be"], key=key)] * repeats + [_page(1, ["other"], last=True, key=key)]


@pytest.fixture
def hook(scripted_api):
    hook = RecordingHook(retry_policy=NO_RETRY)
    yield hook
    hook.close()


def test_a_start_whose_snapshot_repeats_a_page_fails_before_the_start_is_sent(scripted_api, hook):
    scripted_api.script("GET", CALL_PATH, *_spec_example_pages())
    with pytest.raises(TelnyxApiError) as caught:
        hook.start_call_recording(CALL_SID)
    message = str(caught.value)
    assert CALL_PATH in message
    assert "page 2 of the recordings" in message
    assert "repeats the page before it" in message
    assert "page number 0 again" in message
    assert scripted_api.count("GET", CALL_PATH) == 2  # the repeat is not followed by a third request
    assert scripted_api.count("POST", CALL_PATH) == 0


def test_the_same_recordings_under_a_new_page_number_are_a_repeat_too(scripted_api, hook):
    scripted_api.script(
        "GET", CALL_PATH, _page(0, ["a", "b"]), _page(1, ["a", "b"]), _page(2, ["c"], last=True)
    )
    with pytest.raises(TelnyxApiError, match="the same 2 recordings again"):
        hook.list_call_recordings(CALL_SID)
    assert scripted_api.count("GET", CALL_PATH) == 2


def test_a_call_list_that_never_ends_is_bounded_for_a_start(scripted_api, hook):
    # Every page new (its own number and SIDs), and more of them than the bound.
    pages = [_page(n, [f"r{n}"]) for n in range(SNAPSHOT_MAX_PAGES + 20)]
    scripted_api.script("GET", CALL_PATH, *pages, _page(SNAPSHOT_MAX_PAGES + 20, ["end"], last=True))
    with pytest.raises(TelnyxApiError) as caught:
        hook.start_call_recording(CALL_SID)
    message = str(caught.value)
    assert f"run past {SNAPSHOT_MAX_PAGES} pages of {CALL_PAGE_SIZE}" in message
    assert "the bound of this listing" in message
    assert f"a start's snapshot of its call reads at most SNAPSHOT_MAX_PAGES={SNAPSHOT_MAX_PAGES}" in message
    assert scripted_api.count("GET", CALL_PATH) == SNAPSHOT_MAX_PAGES
    assert scripted_api.count("POST", CALL_PATH) == 0


def test_pages_that_move_on_are_all_read(scripted_api, hook):
    scripted_api.script(
        "GET", CALL_PATH, _page(0, ["a", "b"]), _page(1, ["c", "d"]), _page(2, ["e"], last=True)
    )
    assert [r["sid"] for r in hook.list_call_recordings(CALL_SID)] == ["a", "b", "c", "d", "e"]


def test_iter_recordings_stops_at_a_repeated_page_before_yielding_it(scripted_api, hook):
    scripted_api.script("GET", ACCOUNT_PATH, *_spec_example_pages())
    recordings = hook.iter_recordings(page_size=1)
    # Streamed: the first page's recording arrives before the second page is read.
    assert next(recordings)["sid"] == "e9cea0be"
    assert scripted_api.count("GET", ACCOUNT_PATH) == 1
    with pytest.raises(TelnyxApiError, match="repeats the page before it"):
        next(recordings)
    assert scripted_api.count("GET", ACCOUNT_PATH) == 2


def test_list_transcriptions_stops_at_a_repeated_page(scripted_api, hook):
    scripted_api.script("GET", TRANSCRIPTIONS_PATH, *_spec_example_pages(key="transcriptions"))
    with pytest.raises(TelnyxApiError, match="page 2 of the transcriptions"):
        hook.list_transcriptions()
    assert scripted_api.count("GET", TRANSCRIPTIONS_PATH) == 2


async def test_the_async_listing_stops_at_a_repeated_page(scripted_api):
    from datetime import datetime, timezone

    scripted_api.script("GET", ACCOUNT_PATH, *_spec_example_pages())
    config = TelnyxConnectionConfig(
        conn_id="t", base_url=scripted_api.base_url, api_key=SECRET_KEY, account_sid=ACCOUNT_SID
    )
    client = AsyncRecordingClient(config, retry_policy=NO_RETRY)
    try:
        with pytest.raises(TelnyxApiError, match="repeats the page before it") as caught:
            await client.list_recordings_created_since(datetime(2024, 1, 1, tzinfo=timezone.utc))
    finally:
        await client.aclose()
    assert ACCOUNT_PATH in str(caught.value)
    assert scripted_api.count("GET", ACCOUNT_PATH) == 2


def test_the_guard_refuses_a_bound_below_one():
    with pytest.raises(ValueError, match="max_pages"):
        PageGuard("recordings", max_pages=0)
