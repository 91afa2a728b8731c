"""feed_events and FeedStore: what leaves, what is saved, and what happens when the state cannot be kept."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone
from typing import Any

from telnyx_provider.recording_feed import RecordingFeed
from telnyx_provider.triggers.recordings_poll import STATE_KEY, FeedStore, Listing, event_payload, feed_events


def rec(sid: str, status: str = "in-progress") -> dict[str, Any]:
    return {
        "sid": sid,
        "date_created": "2026-12-01T03:00:00+00:00",
        "status": status,
        "duration": 3 if status == "completed" else None,
        "media_url": f"https://media.test/{sid}.wav?X-Amz-Signature=secret",
    }


EARLIEST = datetime.min.replace(tzinfo=timezone.utc)
CREATED = datetime(2026, 12, 1, 3, tzinfo=timezone.utc)  # when the recordings below were created


async def listings(*batches: list[dict[str, Any]]):
    """Each batch as a full listing from the start of time, made a minute after its newest recording."""
    for batch in batches:
        newest = max((datetime.fromisoformat(r["date_created"]) for r in batch), default=EARLIEST)
        yield Listing(batch, start=EARLIEST, listed_at=max(newest, CREATED) + timedelta(minutes=1))


class Store:
    def __init__(self, fail_get: Exception | None = None, fail_set: int = 0) -> None:
        self.values: dict[str, Any] = {}
        self.fail_get, self.fail_set = fail_get, fail_set

    # Like the real store, it keeps and hands out copies (the value goes through JSON to the database).
    async def aget(self, key: str, default: Any = None) -> Any:
        if self.fail_get:
            raise self.fail_get
        return json.loads(self.values[key]) if key in self.values else default

    async def aset(self, key: str, value: Any) -> None:
        if self.fail_set:
            self.fail_set -= 1
            raise ConnectionError("the API server is away")
        self.values[key] = json.dumps(value)

    def state(self) -> Any:
        return json.loads(self.values[STATE_KEY])


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
    assert "a" in accessor.state()["recent_final"]  # saved already, while the event is out
    await stream.aclose()


async def test_a_state_that_cannot_be_saved_holds_the_events_back_until_it_can():
    accessor = Store(fail_set=1)
    feed = RecordingFeed(account_sid="acc")
    await FeedStore(accessor).load(feed)
    sids = await collect(feed, FeedStore(accessor), [], [rec("a", "completed")], [rec("a", "completed")])
    assert sids == ["a"]  # not lost, not twice: it left with the listing after the failed save
    assert "a" in accessor.state()["recent_final"]


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


async def test_a_listing_that_only_finishes_recordings_is_saved_and_a_restart_does_not_repeat_them():
    # The review's case: nothing newer is listed (the frontier stays), two recordings finish.
    accessor = Store()
    in_progress, finished = [rec("a"), rec("b")], [rec("a", "completed"), rec("b", "completed")]
    feed = RecordingFeed(account_sid="acc")
    assert await collect(feed, FeedStore(accessor), in_progress, finished) == ["a", "b"]
    assert accessor.state()["pending"] == {}
    assert set(accessor.state()["recent_final"]) == {"a", "b"}
    resumed = RecordingFeed(account_sid="acc")
    store = FeedStore(accessor)
    await store.load(resumed)
    assert await collect(resumed, store, finished, finished) == []


async def test_every_change_of_what_was_reported_is_written():
    writes: list[Any] = []

    class Recording(Store):
        async def aset(self, key: str, value: Any) -> None:
            await super().aset(key, value)
            writes.append(json.loads(self.values[key]))

    feed = RecordingFeed(account_sid="acc")
    sids = await collect(
        feed,
        FeedStore(Recording()),
        [rec("a"), rec("b")],  # baseline: both pending
        [rec("a", "completed"), rec("b")],  # a finishes
        [rec("a", "completed"), rec("b")],  # nothing changes: no write
        [rec("a", "completed"), rec("b", "absent")],  # b finishes
    )
    assert sids == ["a", "b"]
    assert [sorted(state["pending"]) for state in writes] == [["a", "b"], ["b"], []]


async def test_a_recording_given_up_for_its_age_is_named_once_in_a_warning(caplog):
    def created(sid: str, hours: float, status: str = "in-progress") -> dict[str, Any]:
        stamp = (datetime(2026, 12, 1, tzinfo=timezone.utc) + timedelta(hours=hours)).isoformat()
        return {**rec(sid, status), "date_created": stamp}

    feed = RecordingFeed(account_sid="acc", max_pending_age=3600 * 24)
    with caplog.at_level(logging.WARNING, logger="telnyx_provider.triggers.recordings_poll"):
        sids = await collect(
            feed,
            FeedStore(Store()),
            [created("stuck", 0), created("x", 1)],
            [created("stuck", 0), created("x", 1, "completed"), created("y", 23)],
            [created("stuck", 0), created("y", 23, "completed"), created("z", 25)],  # stuck: 25 h old
            [created("y", 23, "completed"), created("z", 25, "completed")],
        )
    assert sids == ["x", "y", "z"]
    warnings = [r.getMessage() for r in caplog.records if "Gave up" in r.getMessage()]
    assert len(warnings) == 1
    assert "stuck (created 2026-12-01T00:00:00+00:00)" in warnings[0]
    assert "max_pending_age" in warnings[0]
    assert "stuck" not in feed.pending


def test_a_shared_listing_counts_only_for_the_window_the_watcher_needs():
    from telnyx_provider.triggers.recordings_poll import within_window

    feed = RecordingFeed(account_sid="acc", lookback=3600)
    now = CREATED + timedelta(hours=10)
    old = {**rec("old", "completed"), "date_created": (now - timedelta(hours=2)).isoformat()}
    new = {**rec("new"), "date_created": (now - timedelta(minutes=5)).isoformat()}
    wider = Listing([old, new], start=now - timedelta(hours=3), listed_at=now)  # for another watcher
    assert within_window(feed, wider) == [new]  # what its own listing (from now - 1 h) would show
    own = Listing([new], start=now - timedelta(hours=1), listed_at=now)
    assert within_window(feed, own) == [new]
    later = Listing([], start=now - timedelta(minutes=30), listed_at=now)  # made before it joined
    assert within_window(feed, later) is None
