"""RecordingFeed: which recordings finished since the last listing (pure bookkeeping, no I/O)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from telnyx_provider.recording_feed import RecordingFeed

T0 = datetime(2026, 12, 1, 3, 0, 0, tzinfo=timezone.utc)


def rec(sid: str, created_s: float, status: str = "in-progress", duration: int | None = None) -> dict:
    created = (T0 + timedelta(seconds=created_s)).isoformat()
    if status == "completed" and duration is None:
        duration = 5
    return {"sid": sid, "date_created": created, "status": status, "duration": duration}


def sids(recordings) -> list[str]:
    return [r["sid"] for r in recordings]


def test_the_first_listing_is_the_baseline_then_what_finishes_is_reported_once():
    feed = RecordingFeed(account_sid="acc")
    assert feed.observe([rec("old", 0, "completed"), rec("live", 10)]) == []
    assert sids(feed.observe([rec("old", 0, "completed"), rec("live", 10, "completed")])) == ["live"]
    assert feed.observe([rec("old", 0, "completed"), rec("live", 10, "completed")]) == []


def test_absent_is_reported_failed_and_deleted_are_not_and_completed_waits_for_its_duration():
    feed = RecordingFeed(account_sid="acc")
    feed.observe([rec(s, 0) for s in ("a", "b", "c")])
    processing = {**rec("c", 0, "completed"), "duration": None}
    listing = [rec("a", 0, "absent"), rec("b", 0, "failed"), processing]
    assert sids(feed.observe(listing)) == ["a"]
    assert sids(feed.observe([rec("a", 0, "absent"), rec("b", 0, "failed"), rec("c", 0, "completed")])) == [
        "c"
    ]


def test_a_recording_created_and_finished_between_two_listings_is_reported():
    feed = RecordingFeed(account_sid="acc")
    feed.observe([rec("first", 0)])
    assert sids(feed.observe([rec("first", 0), rec("quick", 30, "completed")])) == ["quick"]


def test_an_empty_first_listing_still_reports_what_appears_finished_next():
    feed = RecordingFeed(account_sid="acc")
    assert feed.observe([]) == []
    assert sids(feed.observe([rec("quick", 30, "absent")])) == ["quick"]


def test_since_reports_recordings_already_final_at_the_first_listing():
    feed = RecordingFeed(account_sid="acc", since=T0 + timedelta(seconds=5))
    first = feed.observe([rec("before", 0, "completed"), rec("after", 10, "completed"), rec("live", 20)])
    assert sids(first) == ["after"]
    assert sids(feed.observe([rec("live", 20, "completed")])) == ["live"]


def test_the_window_starts_at_the_oldest_pending_recording_or_the_overlap_before_the_frontier():
    feed = RecordingFeed(account_sid="acc", overlap=60)
    now = T0 + timedelta(hours=1)
    assert feed.window_start(now, lookback=3600) == now - timedelta(hours=1)
    feed.observe([rec("long", 0), rec("short", 600, "completed")])
    assert feed.window_start(now, lookback=3600) == T0
    feed.observe([rec("long", 0), rec("short", 600, "completed"), rec("new", 620)])
    assert feed.window_start(now, lookback=3600) == T0
    feed.observe([rec("long", 0, "completed"), rec("short", 600, "completed"), rec("new", 620, "completed")])
    assert feed.window_start(now, lookback=3600) == T0 + timedelta(seconds=620 - 60)  # the frontier


def test_the_window_follows_telnyx_dates_not_our_clock():
    # Our clock is a day ahead of Telnyx's: the window still starts before Telnyx's newest recording.
    feed = RecordingFeed(account_sid="acc", overlap=60)
    feed.observe([rec("a", 0, "completed")])
    skewed_now = T0 + timedelta(days=1)
    assert feed.window_start(skewed_now, lookback=3600) == T0 - timedelta(seconds=60)
    feed.observe([rec("a", 0, "completed"), rec("b", 30)])
    assert feed.window_start(skewed_now, lookback=3600) == T0 - timedelta(seconds=30)


def test_a_listing_repeating_a_recording_across_pages_reports_it_once():
    feed = RecordingFeed(account_sid="acc")
    feed.observe([rec("a", 0)])
    assert sids(feed.observe([rec("a", 0, "completed"), rec("a", 0, "completed")])) == ["a"]


def test_reports_come_oldest_first():
    feed = RecordingFeed(account_sid="acc")
    feed.observe([rec("late", 20), rec("early", 10)])
    assert sids(feed.observe([rec("late", 20, "completed"), rec("early", 10, "completed")])) == [
        "early",
        "late",
    ]


def test_a_pending_recording_missing_from_three_listings_is_forgotten():
    feed = RecordingFeed(account_sid="acc")
    feed.observe([rec("gone", 0), rec("other", 100)])
    for _ in range(2):
        feed.observe([rec("other", 100)])
    assert "gone" in feed.pending
    feed.observe([rec("other", 100)])
    assert "gone" not in feed.pending


def test_recent_final_is_pruned_behind_the_frontier():
    feed = RecordingFeed(account_sid="acc", overlap=60)
    feed.observe([])
    feed.observe([rec("a", 0, "completed")])
    assert set(feed.recent_final) == {"a"}
    feed.observe([rec("a", 0, "completed"), rec("b", 200, "completed")])
    assert set(feed.recent_final) == {"b"}
    # "a" is now behind the frontier and not pending: listed again, it is not reported again.
    assert feed.observe([rec("a", 0, "completed"), rec("b", 200, "completed")]) == []


def test_unreported_recordings_are_reported_by_the_next_listing():
    feed = RecordingFeed(account_sid="acc")
    feed.observe([rec("a", 0), rec("b", 1), rec("c", 2)])
    listing = [rec("a", 0, "completed"), rec("b", 1, "completed"), rec("c", 2, "completed")]
    batch = feed.observe(listing)
    feed.unreport(batch[1:])
    assert sids(feed.observe(listing)) == ["b", "c"]


def test_the_state_round_trips_through_json_and_resumes_exactly():
    feed = RecordingFeed(account_sid="acc")
    feed.observe([rec("a", 0), rec("b", 5, "completed")])
    saved = json.loads(json.dumps(feed.to_json()))
    resumed = RecordingFeed(account_sid="acc")
    assert resumed.restore(saved)
    listing = [rec("a", 0, "completed"), rec("b", 5, "completed")]
    assert sids(resumed.observe(listing)) == ["a"]
    assert resumed.to_json()["frontier"] == (T0 + timedelta(seconds=5)).isoformat()


def test_a_state_of_another_account_or_version_is_not_restored():
    feed = RecordingFeed(account_sid="acc")
    feed.observe([rec("a", 0)])
    state = feed.to_json()
    assert not RecordingFeed(account_sid="other").restore(state)
    assert not RecordingFeed(account_sid="acc").restore({**state, "version": 99})
    assert not RecordingFeed(account_sid="acc").restore(None)


def test_rfc2822_dates_as_the_api_sends_them_are_read():
    feed = RecordingFeed(account_sid="acc", overlap=10)
    feed.observe([{"sid": "a", "date_created": "Tue, 01 Dec 2026 03:00:00 +0000", "status": "in-progress"}])
    assert feed.window_start(T0, lookback=60) == T0 - timedelta(seconds=10)


def test_to_json_is_a_copy_that_later_listings_do_not_change():
    feed = RecordingFeed(account_sid="acc")
    feed.observe([rec("a", 0), rec("b", 0)])
    saved = feed.to_json()
    feed.observe([rec("a", 0, "completed"), rec("b", 0)])  # finishes one, nothing newer
    assert saved["pending"] == {"a": [(T0).isoformat(), 0], "b": [(T0).isoformat(), 0]}
    assert saved != feed.to_json()


def test_a_recording_not_final_max_pending_age_after_its_creation_is_given_up_once():
    feed = RecordingFeed(account_sid="acc", overlap=60, max_pending_age=3600)
    feed.observe([rec("stuck", 0), rec("a", 10)])
    feed.observe([rec("stuck", 0), rec("a", 10), rec("b", 3599)])
    assert feed.abandoned == []
    assert feed.window_start(T0 + timedelta(hours=2)) == T0
    feed.observe([rec("stuck", 0), rec("a", 10), rec("b", 3599), rec("c", 3601)])
    assert feed.abandoned == [("stuck", T0.isoformat())]
    assert feed.window_start(T0 + timedelta(hours=2)) == T0 + timedelta(seconds=10)  # "a" holds it now
    feed.observe([rec("a", 10, "completed"), rec("b", 3599), rec("c", 3601)])
    assert feed.abandoned == []  # named once


def simulated_week(**feed_args) -> dict[str, object]:
    """A week of an account's life by a fake clock: a recording every 10 minutes, final 5 minutes later,
    and one (``stuck``) created first that never becomes final; the watcher lists every 5 minutes from its
    window start. Returns per-day figures and what was reported."""
    feed = RecordingFeed(account_sid="acc", overlap=120, lookback=4 * 3600, **feed_args)
    created: dict[str, float] = {"stuck": 0.0}
    reported: list[str] = []
    abandoned: list[str] = []
    days: list[dict[str, int]] = []
    for minute in range(0, 7 * 24 * 60, 5):
        now_s = minute * 60.0
        if minute % 10 == 0:
            created[f"r{minute}"] = now_s
        start = feed.window_start(T0 + timedelta(seconds=now_s))
        listing = [
            rec(sid, at, "completed" if sid != "stuck" and now_s - at >= 300 else "in-progress")
            for sid, at in created.items()
            if T0 + timedelta(seconds=at) >= start
        ]
        reported.extend(sids(feed.observe(listing)))
        abandoned.extend(sid for sid, _ in feed.abandoned)
        day = minute // (24 * 60)
        if len(days) <= day:
            days.append({"max_listed": 0, "max_state_bytes": 0})
        days[day]["max_listed"] = max(days[day]["max_listed"], len(listing))
        if minute % 60 == 0:
            state_bytes = len(json.dumps(feed.to_json()))
            days[day]["max_state_bytes"] = max(days[day]["max_state_bytes"], state_bytes)
    return {"days": days, "reported": reported, "abandoned": abandoned, "created": created}


def test_a_stuck_recording_does_not_grow_listings_or_state_over_a_simulated_week():
    week = simulated_week()  # max_pending_age: a day, the default
    days = week["days"]
    assert isinstance(days, list)
    listed = [day["max_listed"] for day in days]
    state = [day["max_state_bytes"] for day in days]
    # From the second day on, each listing covers about a day (144 recordings), not the whole week.
    assert max(listed[1:]) <= 24 * 6 + 3, listed
    assert listed[6] <= listed[1], listed
    assert max(state[1:]) <= state[1] * 1.05, state
    assert week["abandoned"] == ["stuck"]
    created = week["created"]
    assert isinstance(created, dict)
    assert sorted(week["reported"]) == sorted(sid for sid in created if sid != "stuck")  # each once


def test_a_feed_that_has_seen_nothing_yet_keeps_its_window_where_it_first_listed():
    """Review finding: while nothing was ever listed, the window started ``lookback`` before *now* at every
    listing, so a triggerer down (or an API out) longer than ``lookback`` before the account's first
    recording lost what was created and finished meanwhile."""
    feed = RecordingFeed(account_sid="acc", lookback=4 * 3600)
    first = feed.window_start(T0)
    assert feed.observe([], listed_from=first) == []  # the baseline: an account with no recording yet
    five_hours_later = T0 + timedelta(hours=5)
    start = feed.window_start(five_hours_later)
    assert start == first
    resumed = RecordingFeed(account_sid="acc", lookback=4 * 3600)  # and after a restart
    assert resumed.restore(json.loads(json.dumps(feed.to_json())))
    assert resumed.window_start(five_hours_later) == first
    created_meanwhile = rec("r1", 600, "completed")  # ten minutes after the baseline, 4 h 50 min ago
    assert sids(resumed.observe([created_meanwhile], listed_from=start)) == ["r1"]
    # Once a recording is seen, Telnyx's own dates take over: the window follows the frontier.
    assert resumed.window_start(five_hours_later) == T0 + timedelta(seconds=600 - resumed.overlap)
