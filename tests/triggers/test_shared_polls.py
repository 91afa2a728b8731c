"""Shared polls: the deferred waits of one triggerer share one poll of their account, against the sandbox
(which counts requests) and scripted replies over loopback HTTP."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time

import pytest

from telnyx_provider.hooks.recording import RecordingHook
from telnyx_provider.triggers import shared_polls
from telnyx_provider.triggers.recording import RecordingCompletedTrigger
from tests.conftest import ACCOUNT_SID
from tests.hooks.test_recording_hook import DOCS_REPLY
from tests.sandbox.conftest import wait_for
from tests.scripted_api import Reply

LIST = "GET /Recordings"
GET_ONE = "GET /Recordings/{sid}"
INTERVAL = 0.3
ROUND = re.compile(r"(\d+) look\(s\), (\d+) answered by (\d+) list page\(s\), (\d+) GET\(s\)")


@pytest.fixture
def make_sandbox(monkeypatch):
    """``make(extra=None, **Sandbox kwargs)``: a sandbox ``telnyx_default`` points at, stopped at the end."""
    from telnyx_provider.sandbox import Sandbox

    started = []

    def make(extra=None, **kwargs):
        sb = Sandbox(port=0, processing_delay=0.1, **kwargs).start()
        started.append(sb)
        conn = json.loads(sb.airflow_conn_json())
        conn["extra"] = {**conn["extra"], **(extra or {})}
        monkeypatch.setenv("AIRFLOW_CONN_TELNYX_DEFAULT", json.dumps(conn))
        return sb

    yield make
    for sb in started:
        sb.stop()


@pytest.fixture
def rounds(caplog):
    """The rounds the shared polls logged: ``[(looks, answered by listings, pages, GETs), ...]``."""
    caplog.set_level(logging.DEBUG, logger=shared_polls.__name__)

    def read() -> list[tuple[int, ...]]:
        found = (ROUND.search(record.getMessage()) for record in caplog.records)
        return [tuple(int(n) for n in match.groups()) for match in found if match]

    return read


def start_recordings(sb, count: int) -> tuple[list[str], list[str]]:
    hook = RecordingHook()
    calls = [sb.create_call() for _ in range(count)]
    return calls, [hook.start_call_recording(call, play_beep=False)["sid"] for call in calls]


async def events_of(triggers, limit: float = 60.0) -> list[dict]:
    async def first(trigger):
        return (await trigger.run().__anext__()).payload

    return await asyncio.wait_for(asyncio.gather(*(first(t) for t in triggers)), limit)


async def hang_up(sb, calls: list[str], after: float, spread: float) -> None:
    """The callers hang up one after another, over ``spread`` seconds from ``after`` seconds from now."""
    await asyncio.sleep(after)
    for call in calls:
        sb.hangup(call)
        await asyncio.sleep(spread / len(calls))


def requests(sb, route: str) -> int:
    return int(sb.stats()["requests_by_route"].get(route, 0))


async def test_waits_of_one_account_share_one_listing_per_interval(make_sandbox, rounds):
    sb = make_sandbox()
    calls, sids = start_recordings(sb, 40)
    began = time.monotonic()
    hangups = asyncio.ensure_future(hang_up(sb, calls, after=INTERVAL * 2, spread=INTERVAL * 3))
    events = await events_of([RecordingCompletedTrigger(sid, poll_interval=INTERVAL) for sid in sids])
    await hangups
    elapsed = time.monotonic() - began
    assert [event["status"] for event in events] == ["success"] * 40
    assert {event["recording"]["sid"] for event in events} == set(sids)
    assert all(isinstance(event["recording"]["duration"], int) for event in events)
    assert requests(sb, GET_ONE) == 0  # every look answered by a listing (no list lag here)
    logged = rounds()
    assert sum(pages for _, _, pages, _ in logged) == requests(sb, LIST)
    assert sum(looks for looks, *_ in logged) >= 80  # each wait looked at several times...
    assert requests(sb, LIST) <= elapsed / INTERVAL + 2  # ...for about one request per interval


async def test_the_first_look_comes_one_interval_after_the_first_wait_joined(make_sandbox):
    sb = make_sandbox()
    calls, sids = start_recordings(sb, 3)
    for call in calls:
        sb.hangup(call)
    wait_for(lambda: all(RecordingHook().get_recording(sid)["status"] == "completed" for sid in sids))
    began = time.monotonic()
    events = await events_of([RecordingCompletedTrigger(sid, poll_interval=0.5) for sid in sids])
    assert [event["status"] for event in events] == ["success"] * 3
    assert time.monotonic() - began >= 0.5


async def test_a_recording_the_listing_misses_is_fetched(make_sandbox, rounds):
    sb = make_sandbox(list_lag=30.0)  # new recordings stay out of the lists for 30 s
    calls, sids = start_recordings(sb, 5)
    for call in calls:
        sb.hangup(call)
    events = await events_of([RecordingCompletedTrigger(sid, poll_interval=INTERVAL) for sid in sids])
    assert [event["status"] for event in events] == ["success"] * 5
    stats = sb.stats()
    assert all(stats["gets_per_recording"][sid] >= 1 for sid in sids)  # fetched, as the listing missed them
    assert any(pages for _, _, pages, _ in rounds())  # a listing was tried


async def test_a_busy_account_costs_no_more_than_one_get_per_wait_plus_one(make_sandbox, rounds):
    sb = make_sandbox(max_page_size=5)  # every page holds 5: listing 60 recordings takes 12 pages
    start_recordings(sb, 60)  # other recordings of the account, not waited for
    calls, sids = start_recordings(sb, 3)
    hangups = asyncio.ensure_future(hang_up(sb, calls, after=INTERVAL * 4, spread=INTERVAL))
    before = sb.stats()["requests_by_route"]
    events = await events_of([RecordingCompletedTrigger(sid, poll_interval=INTERVAL) for sid in sids])
    await hangups
    assert [event["status"] for event in events] == ["success"] * 3
    after = sb.stats()["requests_by_route"]
    sent = sum(after[route] - before.get(route, 0) for route in (LIST, GET_ONE) if route in after)
    looks = sum(looks for looks, *_ in rounds())
    assert looks >= 9
    assert sent <= looks + 1  # one GET per look at most, plus the one page risked on the first listing
    assert after.get(LIST, 0) - before.get(LIST, 0) <= 1


async def test_the_poll_stops_when_its_waits_are_cancelled(make_sandbox):
    sb = make_sandbox()
    _calls, sids = start_recordings(sb, 30)  # never hung up: the waits would go on for ever
    listed = requests(sb, LIST)
    waits = [
        asyncio.ensure_future(RecordingCompletedTrigger(sid, poll_interval=0.1).run().__anext__())
        for sid in sids
    ]
    while requests(sb, LIST) < listed + 2:  # the poll is running
        await asyncio.sleep(0.02)
    for wait in waits:
        wait.cancel()
    await asyncio.gather(*waits, return_exceptions=True)
    assert shared_polls._POLLS == {}
    assert asyncio.all_tasks() == {asyncio.current_task()}  # no round nor GET left behind
    sent = sb.stats()["requests_total"]
    await asyncio.sleep(0.5)  # five intervals: a leaked poll would have listed again
    assert sb.stats()["requests_total"] == sent


async def test_waits_of_other_accounts_or_intervals_poll_apart(make_sandbox):
    sb = make_sandbox()
    calls, sids = start_recordings(sb, 2)
    for call in calls:
        sb.hangup(call)
    triggers = [
        RecordingCompletedTrigger(sids[0], poll_interval=INTERVAL),
        RecordingCompletedTrigger(sids[1], poll_interval=INTERVAL * 2),
    ]
    running = asyncio.ensure_future(events_of(triggers))
    while len(shared_polls._POLLS) < 2 and not running.done():
        await asyncio.sleep(0.01)
    assert len(shared_polls._POLLS) == 2
    assert [event["status"] for event in await running] == ["success"] * 2


# -- the rate limit, as a whole ------------------------------------------------------------------------


async def test_one_429_slows_every_wait_of_the_connection(make_sandbox):
    """Thirty waits polling on their own every 0.1 s would send ~300 requests a second: after one 429 asking
    for 2 s, no request leaves for those 2 s but the few already in flight."""
    sb = make_sandbox(extra={"shared_polls": False}, retry_after=2)
    calls, sids = start_recordings(sb, 30)
    sb.inject(GET_ONE, "429")
    running = asyncio.ensure_future(
        events_of([RecordingCompletedTrigger(sid, poll_interval=0.1) for sid in sids])
    )
    while not sb.stats()["faults_injected"].get("429"):
        await asyncio.sleep(0.005)
    refused_at = requests(sb, GET_ONE)
    await asyncio.sleep(1.5)
    assert requests(sb, GET_ONE) - refused_at <= 10  # at most the pool's requests already in flight
    for call in calls:
        sb.hangup(call)
    assert [event["status"] for event in await running] == ["success"] * 30


async def test_one_429_on_a_listing_holds_the_next_round(make_sandbox):
    sb = make_sandbox(retry_after=2)
    calls, sids = start_recordings(sb, 20)
    listed = requests(sb, LIST)
    sb.inject(LIST, "429")
    running = asyncio.ensure_future(
        events_of([RecordingCompletedTrigger(sid, poll_interval=0.1) for sid in sids])
    )
    while not sb.stats()["faults_injected"].get("429"):
        await asyncio.sleep(0.005)
    sent = sb.stats()["requests_total"]
    await asyncio.sleep(1.5)
    assert sb.stats()["requests_total"] == sent  # nobody asks during the 2 s, not even the 20 waits' looks
    assert requests(sb, LIST) == listed + 1
    for call in calls:
        sb.hangup(call)
    assert [event["status"] for event in await running] == ["success"] * 20


async def test_gets_of_a_round_are_spread_and_stop_at_a_429(scripted_api):
    """Where listing is refused, a round fetches one by one: forty first looks spread over half an interval
    (not forty at once), and a 429 stops the rest of the round."""
    sids = [f"00000000-0000-4000-8000-{i:012d}" for i in range(40)]
    base = f"/texml/Accounts/{ACCOUNT_SID}/Recordings"
    scripted_api.script("GET", f"{base}.json", Reply(422, {"errors": [{"code": "10015", "title": "Bad"}]}))
    for sid in sids:
        scripted_api.script(
            "GET", f"{base}/{sid}.json", Reply(200, {**DOCS_REPLY, "sid": sid, "status": "in-progress"})
        )
    refused = sids[30]
    scripted_api.script(
        "GET",
        f"{base}/{refused}.json",
        Reply(429, {"errors": [{"code": "10011"}]}, {"Retry-After": "3"}),
        Reply(200, {**DOCS_REPLY, "sid": refused, "status": "in-progress"}),
    )
    interval = 2.0
    waits = [
        asyncio.ensure_future(RecordingCompletedTrigger(sid, poll_interval=interval).run().__anext__())
        for sid in sids
    ]
    try:
        while scripted_api.count("GET", f"{base}/{refused}.json") < 1:
            await asyncio.sleep(0.01)
        await asyncio.sleep(1.0)
        looks = sorted(seen.at for seen in scripted_api.seen if seen.path != f"{base}.json")
    finally:
        for wait in waits:
            wait.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
    # As many at once as the pool has connections (10), then one every step (25 ms): spread, not all at once.
    # In any 0.1 s: 10 + 4 when the loop keeps time; a loaded machine's late wake-ups bunch a few more, so the
    # bound is half the round's looks, which a round sent all at once (30 before the 429) still breaks.
    step = interval * shared_polls.GET_SPREAD / len(sids)
    assert looks[-1] - looks[0] >= (30 - 10) * step * 0.9
    assert max(sum(1 for at in looks if start <= at < start + 0.1) for start in looks) <= len(sids) // 2
    assert len(looks) <= 32  # thirty-one looks, then the round stopped at the 429 (one in flight at most)


def test_what_polls_learned_is_kept_for_a_bounded_number_of_groups():
    groups = [("config", f"account-{i}", 1.0, None) for i in range(shared_polls.MAX_LEDGERS + 10)]
    try:
        ledgers = [shared_polls._ledger(group) for group in groups]
        assert len(shared_polls._LEDGERS) <= shared_polls.MAX_LEDGERS
        assert shared_polls._ledger(groups[-1]) is ledgers[-1]  # the newest are kept
    finally:
        for group in groups:
            shared_polls._LEDGERS.pop(group, None)
