"""PollLedger: one listing or one GET per recording, whichever costs fewer requests, never more than one GET
per wait (plus one request once)."""

from __future__ import annotations

import random

import pytest

from telnyx_provider.poll_plan import STALE_AFTER, PollLedger

NOW = 1_800_000_000.0


def listed(ledger: PollLedger, start: float, created: list[float], pages: int, *, complete: bool = True):
    """Record a listing from ``start`` that held ``created`` and answered every wait it was asked for."""
    ledger.record_listing(start, created, pages, complete, NOW)


def test_recordings_not_looked_at_yet_and_lone_ones_are_fetched():
    ledger = PollLedger(page_size=10)
    plan = ledger.plan({"a": None, "b": None}, NOW)
    assert plan.window_start is None
    assert set(plan.fetched) == {"a", "b"}
    assert ledger.plan({"a": NOW - 5}, NOW).window_start is None  # one GET is never beaten by a listing


def test_knowing_nothing_of_the_account_it_lists_from_the_oldest_once():
    ledger = PollLedger(page_size=10)
    plan = ledger.plan({"a": NOW - 30.5, "b": NOW - 10, "c": None}, NOW)
    assert plan.window_start == NOW - 31  # whole seconds, never after the oldest
    assert set(plan.listed) == {"a", "b"}
    assert plan.fetched == ("c",)


def test_a_listing_that_costs_more_pages_than_the_waits_it_answers_gives_way_to_gets():
    ledger = PollLedger(page_size=10)
    listed(ledger, NOW - 100, [NOW - 100 + i / 10 for i in range(1000)], 100)  # a busy account
    ledger.settle(answered=3, pages=1)
    plan = ledger.plan({"a": NOW - 99, "b": NOW - 50, "c": NOW - 20}, NOW)
    assert plan.window_start is None
    assert set(plan.fetched) == {"a", "b", "c"}


def test_an_old_recording_is_fetched_rather_than_stretching_every_listing_back_to_it():
    ledger = PollLedger(page_size=10)
    created = [NOW - 3600 + i for i in range(3600)]  # one recording a second for an hour
    listed(ledger, NOW - 3600, created, 360)
    ledger.settle(answered=50, pages=10)
    due = {f"new{i}": NOW - 60 + i for i in range(40)}
    due["old"] = NOW - 3500
    plan = ledger.plan(due, NOW)
    assert plan.fetched == ("old",)
    assert plan.window_start == NOW - 60
    assert len(plan.listed) == 40


def test_a_start_before_what_the_last_listing_covered_is_not_guessed():
    ledger = PollLedger(page_size=100)
    listed(ledger, NOW - 60, [NOW - 60 + i for i in range(60)], 6)
    ledger.settle(answered=20, pages=6)
    plan = ledger.plan({"a": NOW - 600, "b": NOW - 30, "c": NOW - 20}, NOW)
    assert plan.fetched == ("a",)
    assert set(plan.listed) == {"b", "c"}


def test_new_recordings_since_the_last_listing_count_in_its_estimate():
    ledger = PollLedger(page_size=10)
    listed(ledger, NOW - 60, [NOW - 60 + i for i in range(60)], 6)  # one a second
    assert ledger.pages_from(NOW - 30, NOW) == 3
    assert ledger.pages_from(NOW - 30, NOW + 40) == 7  # ~40 more since


def test_a_listing_cut_short_is_known_to_cost_more_than_it_read():
    ledger = PollLedger(page_size=10)
    listed(ledger, NOW - 60, [NOW - 60 + i for i in range(20)], 2, complete=False)
    assert ledger.pages_from(NOW - 60, NOW) >= 3


def test_what_a_listing_said_goes_stale():
    ledger = PollLedger(page_size=10)
    listed(ledger, NOW - 60, [NOW - 60 + i / 100 for i in range(6000)], 600)
    assert ledger.pages_from(NOW - 60, NOW) >= 600
    assert ledger.pages_from(NOW - 60, NOW + STALE_AFTER + 1) == 1  # worth a look again, if it can pay


def test_the_first_page_may_cost_one_request_once():
    ledger = PollLedger()
    assert ledger.may_read_page(pages_read=0, answered=0)  # nothing known: one request risked
    assert not ledger.may_read_page(pages_read=1, answered=0)
    ledger.settle(answered=0, pages=1)  # it answered nothing
    assert ledger.allowance == -1
    assert not ledger.may_read_page(pages_read=0, answered=0)
    assert ledger.plan({"a": NOW - 5, "b": NOW - 4, "c": NOW - 3}, NOW).window_start is None


def test_pages_are_read_while_they_pay():
    ledger = PollLedger()
    assert ledger.may_read_page(pages_read=3, answered=3)  # 4 pages, 3 answered: one over, covered once
    assert not ledger.may_read_page(pages_read=3, answered=2)
    ledger.settle(answered=100, pages=2)
    assert ledger.balance == 98
    assert ledger.may_read_page(pages_read=50, answered=0)  # savings pay for looks into a busier account


@pytest.mark.parametrize("seed", range(20))
def test_listings_never_cost_more_than_one_get_per_wait_plus_one(seed):
    """Whatever the pages hold, the requests of every round (pages read while they pay, then one GET per
    wait the listing did not answer) stay within one GET per wait, plus one, over the ledger's life."""
    rng = random.Random(seed)
    ledger = PollLedger(page_size=rng.choice([5, 50, 250]))
    spent = gets_path = 0
    for _ in range(300):
        waits = rng.randint(1, 40)
        due = {f"r{i}": NOW - rng.uniform(0, 600) for i in range(waits)}
        plan = ledger.plan(due, NOW)
        pages = answered = 0
        if plan.window_start is not None:
            holds = rng.choice([0.0, 0.1, 0.5, 1.0])  # share of the listed waits a page may answer
            while ledger.may_read_page(pages, answered) and answered < len(plan.listed):
                pages += 1
                answered += min(len(plan.listed) - answered, int(rng.random() * holds * 10))
            ledger.settle(answered, pages)
            ledger.record_listing(plan.window_start, [NOW] * pages * ledger.page_size, pages, False, NOW)
        spent += pages + (waits - answered)
        gets_path += waits
        assert spent <= gets_path + 1
