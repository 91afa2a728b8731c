"""feed_events and FeedStore: what leaves, what is saved, and what happens when the state cannot be kept."""

from __future__ import annotations

import logging
from typing import Any

from telnyx_provider.recording_feed import RecordingFeed
from telnyx_provider.triggers.recordings_poll import STATE_KEY, FeedStore, event_payload, feed_events


def rec(sid: str, status: str = "in-progress") -> dict[str, Any]:
    return {
        "sid": sid,
        "date_created": "2026-12-01T03:00:00+00:00",
        "status": status,
        "duration": 3 if status == "completed" else None,
        "media_url": f"https://media.test/{sid}.wav?X-Amz-Signature=secret",
    }


async def listings(*batches: list[dict[str, Any]]):
    for batch in batches:
        yield batch


class Store:
    def __init__(self, fail_get: Exception | None = None, fail_set: int = 0) -> None:
        self.values: dict[str, Any] = {}
        self.fail_get, self.fail_set = fail_get, fail_set

    async def aget(self, key: str, default: Any = None) -> Any:
        if self.fail_get:
            raise self.fail_get
        return self.values.get(key, default)

    async def aset(self, key: str, value: Any) -> None:
        if self.fail_set:
            self.fail_set -= 1
            raise ConnectionError("the API server is away")
        self.values[key] = value


async def collect(feed: RecordingFeed, store: FeedStore, *batches) -> list[str]:
    return [event.payload["sid"] async for event in feed_events(feed, store, listings(*batches))]


def test_the_payload_leaves_out_the_media_link_and_keeps_the_rest():
    payload = event_payload(rec("a", "completed"))
    assert "media_url" not in payload
    assert payload["sid"] == "a"
    assert payload["duration"] == 3


async def test_the_state_is_saved_before_the_events_leave():
    accessor = Store()
    store = FeedStore(accessor)
    feed = RecordingFeed(account_sid="acc")
    stream = feed_events(feed, store, listings([rec("a")], [rec("a", "completed")]))
    event = await stream.__anext__()
    assert event.payload["sid"] == "a"
    assert "a" in accessor.values[STATE_KEY]["recent_final"]  # saved already, while the event is out
    await stream.aclose()


async def test_a_state_that_cannot_be_saved_holds_the_events_back_until_it_can():
    accessor = Store(fail_set=1)
    feed = RecordingFeed(account_sid="acc")
    await FeedStore(accessor).load(feed)
    sids = await collect(feed, FeedStore(accessor), [], [rec("a", "completed")], [rec("a", "completed")])
    assert sids == ["a"]  # not lost, not twice: it left with the listing after the failed save
    assert "a" in accessor.values[STATE_KEY]["recent_final"]


async def test_one_trigger_watching_several_assets_keeps_its_state_in_memory(caplog):
    store = FeedStore(Store(fail_get=ValueError("Task has 2 concrete inlets and outlets")))
    feed = RecordingFeed(account_sid="acc")
    with caplog.at_level(logging.WARNING):
        await store.load(feed)
    assert not store.durable
    assert "kept in memory only" in caplog.text
    assert await collect(feed, store, [rec("b")], [rec("b", "completed")]) == ["b"]


async def test_without_a_state_store_it_works_in_memory():
    store = FeedStore(None)
    assert not store.durable
    feed = RecordingFeed(account_sid="acc")
    assert await collect(feed, store, [rec("c", "completed")], [rec("d")], [rec("d", "absent")]) == ["d"]


def test_failed_listings_back_off_to_a_minute_at_most():
    from telnyx_provider.triggers.recordings_poll import retry_wait

    assert [retry_wait(10, n) for n in range(1, 6)] == [10, 20, 40, 60, 60]
    assert retry_wait(0.5, 1) == 0.5
    assert retry_wait(120, 3) == 120  # an interval over a minute is kept
