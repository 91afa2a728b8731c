"""RecordingsFinishedTrigger against the sandbox over real HTTP: events, baseline, restarts, outages, pages,
shared polls."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import requests

from telnyx_provider.triggers.recording import RecordingsFinishedTrigger
from telnyx_provider.triggers.recordings_poll import STATE_KEY

POLL = 0.2
LIST_ROUTE = "GET /Recordings"


class StateStore:
    """What the triggerer injects as ``asset_state_store`` for a watcher of one asset (its public API).

    Like the real one (values go through JSON to the metadata database), it keeps and hands out copies.
    """

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.writes = 0

    async def aget(self, key: str, default: Any = None) -> Any:
        return json.loads(self.values[key]) if key in self.values else default

    async def aset(self, key: str, value: Any) -> None:
        self.values[key] = json.dumps(value)
        self.writes += 1

    async def adelete(self, key: str) -> None:
        self.values.pop(key, None)

    async def aclear(self) -> None:
        self.values.clear()


def start_recording(sb, *, hangup_after: float | None = None, silent: bool = False) -> tuple[str, str]:
    call_sid = sb.create_call(hangup_after=hangup_after, silent=silent)
    reply = requests.post(
        f"{sb.base_url}/texml/Accounts/{sb.account_sid}/Calls/{call_sid}/Recordings.json",
        headers={"Authorization": f"Bearer {sb.api_key}"},
        data={},
        timeout=5,
    )
    reply.raise_for_status()
    return call_sid, reply.json()["sid"]


def status_of(sb, sid: str) -> str:
    reply = requests.get(
        f"{sb.base_url}/texml/Accounts/{sb.account_sid}/Recordings/{sid}.json",
        headers={"Authorization": f"Bearer {sb.api_key}"},
        timeout=5,
    )
    return str(reply.json()["status"])


async def until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


class Running:
    """A trigger's event stream consumed in a task, as the triggerer does."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.events: list[dict[str, Any]] = []
        self.task = asyncio.create_task(self._consume())

    async def _consume(self) -> None:
        async for event in self.stream:
            self.events.append(event.payload)

    def sids(self) -> list[str]:
        return [event["sid"] for event in self.events]

    async def stop(self) -> None:
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task
        await self.stream.aclose()


def trigger(sb, **kwargs) -> RecordingsFinishedTrigger:
    return RecordingsFinishedTrigger(account_sid=sb.account_sid, poll_interval=POLL, **kwargs)


def polls(sb) -> int:
    return int(sb.stats()["requests_by_route"].get(LIST_ROUTE, 0))


async def test_recordings_that_finish_are_reported_and_those_final_before_start_are_not(sandbox):
    call_done, done = start_recording(sandbox)
    sandbox.hangup(call_done)
    await until(lambda: status_of(sandbox, done) == "completed")
    _, silent = start_recording(sandbox, silent=True)
    call_live, live = start_recording(sandbox)
    running = Running(trigger(sandbox).run())
    await until(lambda: polls(sandbox) >= 1)
    sandbox.hangup(call_live)
    sandbox.hangup(sandbox.create_call())  # noise: a call without a recording
    await until(lambda: len(running.events) >= 1)
    sandbox_polls = polls(sandbox)
    await until(lambda: polls(sandbox) >= sandbox_polls + 3)  # a few more looks: nothing else comes
    await running.stop()
    assert running.sids() == [live]
    (event,) = running.events
    assert event["status"] == "completed"
    assert event["duration"] is not None
    assert "media_url" not in event  # a bearer link: left out of the event (and so of the triggerer's log)
    assert silent not in running.sids()


async def test_an_absent_recording_is_reported(sandbox):
    running = Running(trigger(sandbox).run())
    await until(lambda: polls(sandbox) >= 1)
    call_sid, sid = start_recording(sandbox, silent=True)
    sandbox.hangup(call_sid)
    await until(lambda: len(running.events) >= 1)
    await running.stop()
    assert [(e["sid"], e["status"]) for e in running.events] == [(sid, "absent")]


async def test_since_reports_recordings_already_final_at_start(sandbox):
    since = datetime.now(timezone.utc) - timedelta(seconds=5)
    call_sid, sid = start_recording(sandbox)
    sandbox.hangup(call_sid)
    await until(lambda: status_of(sandbox, sid) == "completed")
    running = Running(trigger(sandbox, since=since.isoformat()).run())
    await until(lambda: len(running.events) >= 1)
    await running.stop()
    assert running.sids() == [sid]


async def test_exactly_once_across_a_restart_from_serialize_with_the_same_state_store(sandbox):
    store = StateStore()
    first = trigger(sandbox)
    first.asset_state_store = store
    calls = [start_recording(sandbox) for _ in range(6)]
    running = Running(first.run())
    await until(lambda: polls(sandbox) >= 1)
    for call_sid, _ in calls[:2]:
        sandbox.hangup(call_sid)
    await until(lambda: len(running.events) == 2)
    await running.stop()
    assert STATE_KEY in store.values
    for call_sid, _ in calls[2:]:  # they finish while no trigger runs
        sandbox.hangup(call_sid)
    await until(lambda: all(status_of(sandbox, sid) == "completed" for _, sid in calls))

    classpath, kwargs = first.serialize()
    assert classpath == "telnyx_provider.triggers.recording.RecordingsFinishedTrigger"
    second = RecordingsFinishedTrigger(**kwargs)
    second.asset_state_store = store
    resumed = Running(second.run())
    await until(lambda: len(resumed.events) >= 4)
    count = polls(sandbox)
    await until(lambda: polls(sandbox) >= count + 3)
    await resumed.stop()
    reported = running.sids() + resumed.sids()
    assert sorted(reported) == sorted(sid for _, sid in calls)  # none lost, none twice


async def test_a_stop_midway_through_a_batch_hands_the_rest_to_the_next_run(sandbox):
    store = StateStore()
    first = trigger(sandbox)
    first.asset_state_store = store
    calls = [start_recording(sandbox) for _ in range(3)]
    stream = first.run()
    first_event = asyncio.ensure_future(stream.__anext__())
    await until(lambda: polls(sandbox) >= 1)
    for call_sid, _ in calls:  # all three finish before the next look: one batch of three
        sandbox.hangup(call_sid)
    got = (await asyncio.wait_for(first_event, 10)).payload["sid"]
    # The consumer keeps the first event and asks for the next (so the first is handed over), then stops
    # holding the second, before keeping it: the second is not handed over.
    taken = (await asyncio.wait_for(stream.__anext__(), 10)).payload["sid"]
    await stream.aclose()

    second = RecordingsFinishedTrigger(**first.serialize()[1])
    second.asset_state_store = store
    resumed = Running(second.run())
    await until(lambda: len(resumed.events) >= 2)
    count = polls(sandbox)
    await until(lambda: polls(sandbox) >= count + 3)
    await resumed.stop()
    assert taken in resumed.sids()
    assert sorted([got, *resumed.sids()]) == sorted(sid for _, sid in calls)


async def test_an_outage_does_not_end_it(sandbox, monkeypatch):
    # Few, short retries per listing: the next interval is the real retry of a watcher.
    conn = {**json.loads(sandbox.airflow_conn_json()), "extra": {"max_retries": 1, "retry_max_wait": 0.2}}
    monkeypatch.setenv("AIRFLOW_CONN_TELNYX_DEFAULT", json.dumps(conn))
    running = Running(trigger(sandbox).run())
    await until(lambda: polls(sandbox) >= 1)
    call_sid, sid = start_recording(sandbox)
    sandbox.set_faults(1.0, ["503", "reset"])
    sandbox.hangup(call_sid)
    faults = lambda: sum(sandbox.stats()["faults_injected"].values())  # noqa: E731
    await until(lambda: faults() >= 8, timeout=30)  # several listings failed, retries included
    assert not running.task.done()
    assert running.events == []
    sandbox.set_faults(0.0)
    await until(lambda: len(running.events) >= 1, timeout=30)
    await running.stop()
    assert running.sids() == [sid]


async def test_every_page_is_read(sandbox):
    running = Running(trigger(sandbox, page_size=2).run())
    calls = [start_recording(sandbox) for _ in range(5)]
    await until(lambda: polls(sandbox) >= 1)
    for call_sid, _ in calls:
        sandbox.hangup(call_sid)
    await until(lambda: len(running.events) >= 5)
    await running.stop()
    assert sorted(running.sids()) == sorted(sid for _, sid in calls)


async def test_one_listing_reads_every_page_with_one_request_each(sandbox):
    from telnyx_provider.hooks.recording_async import shared_client

    old = start_recording(sandbox)[1]
    await asyncio.sleep(1.1)  # DateCreated has a resolution of one second
    since = datetime.now(timezone.utc)
    calls = [start_recording(sandbox) for _ in range(5)]
    async with shared_client("telnyx_default") as client:
        before = polls(sandbox)
        listing = await client.list_recordings_created_since(since, page_size=2)
        assert polls(sandbox) - before == 3  # pages of 2, 2 and 1
    assert sorted(r["sid"] for r in listing) == sorted(sid for _, sid in calls)
    assert old not in {r["sid"] for r in listing}


async def test_two_watchers_of_one_account_share_one_poll(sandbox):
    # Shared poll loops for watchers are new in Airflow 3.3; before, each watcher polls on its own.
    shared_stream = pytest.importorskip("airflow.triggers.shared_stream", reason="Airflow 3.3+ only")
    SharedStreamManager = shared_stream.SharedStreamManager

    manager = SharedStreamManager()
    stores = [StateStore(), StateStore()]
    triggers = [trigger(sandbox) for _ in stores]
    for each, store in zip(triggers, stores, strict=True):
        each.asset_state_store = store
    keys = {each.shared_stream_key() for each in triggers}
    assert len(keys) == 1
    (key,) = keys
    running = [
        Running(each.filter_shared_stream(manager.subscribe(trigger_id=index, trigger=each, key=key)))
        for index, each in enumerate(triggers)
    ]
    calls = [start_recording(sandbox) for _ in range(3)]
    await until(lambda: polls(sandbox) >= 1)
    started = time.monotonic()
    before = polls(sandbox)
    for call_sid, _ in calls:
        sandbox.hangup(call_sid)
    await until(lambda: all(len(r.events) >= 3 for r in running))
    await asyncio.sleep(1.0)
    elapsed, made = time.monotonic() - started, polls(sandbox) - before
    for index, each in enumerate(running):
        await each.stop()
        await manager.unsubscribe(index, key)
    await manager.stop_all()
    expected = sorted(sid for _, sid in calls)
    assert [sorted(r.sids()) for r in running] == [expected, expected]
    assert all(STATE_KEY in store.values for store in stores)  # each watcher keeps its own state
    # One poll loop for both: at most one listing per interval (two loops would make about twice as many).
    assert made <= elapsed / POLL + 2, (made, elapsed)


def test_serialize_round_trips_and_bad_arguments_are_refused():
    original = RecordingsFinishedTrigger(
        account_sid="acc", poll_interval=5, since="2026-12-01T03:00:00Z", page_size=50
    )
    classpath, kwargs = original.serialize()
    rebuilt = RecordingsFinishedTrigger(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert kwargs["since"] == "2026-12-01T03:00:00+00:00"
    from telnyx_provider.errors import TelnyxValidationError

    for bad in (
        {"poll_interval": 0},
        {"since": "2026-12-01T03:00:00"},  # naive: its time zone would be a guess
        {"since": "yesterday"},
        {"page_size": 0},
        {"lookback": -1},
    ):
        with pytest.raises(TelnyxValidationError):
            RecordingsFinishedTrigger(account_sid="acc", **bad)


@pytest.fixture
def make_sandbox(monkeypatch):
    """``make(**Sandbox kwargs)``: a sandbox with ``telnyx_default`` pointing at it, stopped at the end."""
    from telnyx_provider.sandbox import Sandbox

    started = []

    def make(**kwargs):
        sb = Sandbox(port=0, processing_delay=0.2, **kwargs).start()
        started.append(sb)
        monkeypatch.setenv("AIRFLOW_CONN_TELNYX_DEFAULT", sb.airflow_conn_json())
        return sb

    yield make
    for sb in started:
        sb.stop()


@pytest.mark.parametrize("skew", [-900.0, 900.0])
async def test_a_service_clock_off_from_ours_loses_and_repeats_nothing(make_sandbox, skew):
    sb = make_sandbox(clock_skew=skew)
    calls = [start_recording(sb) for _ in range(2)]
    running = Running(trigger(sb, overlap=5).run())
    await until(lambda: polls(sb) >= 1)
    sb.hangup(calls[0][0])
    await until(lambda: len(running.events) >= 1)
    late_call, late = start_recording(sb)  # created after the frontier: found by the Telnyx-dated window
    sb.hangup(late_call)
    sb.hangup(calls[1][0])
    await until(lambda: len(running.events) >= 3)
    count = polls(sb)
    await until(lambda: polls(sb) >= count + 3)
    await running.stop()
    assert sorted(running.sids()) == sorted([calls[0][1], calls[1][1], late])


async def test_recordings_late_to_appear_in_the_list_are_still_reported_once(make_sandbox):
    sb = make_sandbox(list_lag=1.0)
    running = Running(trigger(sb, overlap=30).run())
    await until(lambda: polls(sb) >= 1)
    first_call, first = start_recording(sb)
    await until(lambda: polls(sb) >= 8)  # it shows up in the list only after the lag
    quick_call, quick = start_recording(sb)
    sb.hangup(quick_call)  # finished before it is even listed
    sb.hangup(first_call)
    await until(lambda: len(running.events) >= 2)
    count = polls(sb)
    await until(lambda: polls(sb) >= count + 8)  # past the lag: nothing more comes
    await running.stop()
    assert sorted(running.sids()) == sorted([first, quick])


async def test_a_service_that_caps_the_page_size_is_still_read_to_the_end(make_sandbox):
    sb = make_sandbox(max_page_size=2)
    running = Running(trigger(sb).run())  # asks for 1,000 a page, gets 2
    calls = [start_recording(sb) for _ in range(5)]
    await until(lambda: polls(sb) >= 1)
    for call_sid, _ in calls:
        sb.hangup(call_sid)
    await until(lambda: len(running.events) >= 5)
    await running.stop()
    assert sorted(running.sids()) == sorted(sid for _, sid in calls)


def test_since_overlap_and_max_pending_age_are_part_of_the_shared_key():
    base = {"account_sid": "acc", "poll_interval": 5}
    key = RecordingsFinishedTrigger(**base).shared_stream_key()
    for changed in (
        {"since": "2026-12-01T03:00:00Z"},
        {"overlap": 60},
        {"max_pending_age": 7200},
        {"lookback": 60},
    ):
        assert RecordingsFinishedTrigger(**base, **changed).shared_stream_key() != key, changed
    assert RecordingsFinishedTrigger(**base).shared_stream_key() == key


class SharedPoll:
    """Watchers subscribed to one shared poll through Airflow's own SharedStreamManager (3.3)."""

    def __init__(self) -> None:
        shared_stream = pytest.importorskip("airflow.triggers.shared_stream", reason="Airflow 3.3+ only")
        self.manager = shared_stream.SharedStreamManager()
        self.running: list[tuple[int, Any, Running]] = []

    def subscribe(self, each: RecordingsFinishedTrigger) -> Running:
        key = each.shared_stream_key()
        trigger_id = len(self.running)
        running = Running(
            each.filter_shared_stream(self.manager.subscribe(trigger_id=trigger_id, trigger=each, key=key))
        )
        self.running.append((trigger_id, key, running))
        return running

    async def stop(self) -> None:
        for trigger_id, key, running in self.running:
            await running.stop()
            await self.manager.unsubscribe(trigger_id, key)
        await self.manager.stop_all()


async def test_since_is_honoured_on_the_shared_poll(sandbox):
    since = datetime.now(timezone.utc) - timedelta(seconds=60)
    call_sid, sid = start_recording(sandbox)
    created = time.monotonic()
    sandbox.hangup(call_sid)
    # since reaches further back than lookback: the first listing must start at since
    await until(lambda: status_of(sandbox, sid) == "completed" and time.monotonic() - created > 3)
    poll = SharedPoll()
    watcher = trigger(sandbox, since=since.isoformat(), lookback=2)
    watcher.asset_state_store = StateStore()
    running = poll.subscribe(watcher)
    await until(lambda: len(running.events) >= 1)
    await poll.stop()
    assert running.sids() == [sid]


async def test_a_watcher_joining_a_shared_poll_resumes_from_its_own_stored_state(sandbox):
    lookback = 4.0
    store = StateStore()
    # The watcher's earlier life (its own loop): it saw the recording in progress, stored that, stopped.
    call_sid, old = start_recording(sandbox)
    earlier = trigger(sandbox, lookback=lookback)
    earlier.asset_state_store = store
    running = Running(earlier.run())
    await until(lambda: old in json.loads(store.values.get(STATE_KEY, "{}")).get("pending", {}))
    await running.stop()
    created = time.monotonic()
    sandbox.hangup(call_sid)  # it finishes while no triggerer runs, and stays down past lookback
    await until(lambda: status_of(sandbox, old) == "completed" and time.monotonic() - created > lookback + 1)

    poll = SharedPoll()
    fresh = trigger(sandbox, lookback=lookback)
    fresh.asset_state_store = StateStore()
    first = poll.subscribe(fresh)  # another watcher of the account already runs the shared poll
    await until(lambda: polls(sandbox) >= 2)
    resumed = trigger(sandbox, lookback=lookback)
    resumed.asset_state_store = store
    second = poll.subscribe(resumed)
    await until(lambda: len(second.events) >= 1)
    count = polls(sandbox)
    await until(lambda: polls(sandbox) >= count + 3)
    await poll.stop()
    assert second.sids() == [old]
    assert first.sids() == []  # final before the fresh watcher started: its baseline


async def test_a_recording_stuck_in_progress_is_given_up_with_one_warning(sandbox, caplog):
    import logging

    stuck_call, stuck = start_recording(sandbox)  # its call never ends
    store = StateStore()
    watcher = trigger(sandbox, overlap=0.5, max_pending_age=2)
    watcher.asset_state_store = store
    with caplog.at_level(logging.WARNING, logger="telnyx_provider.triggers.recordings_poll"):
        running = Running(watcher.run())
        await until(lambda: stuck in json.loads(store.values.get(STATE_KEY, "{}")).get("pending", {}))
        created = time.monotonic()
        await until(lambda: time.monotonic() - created > 3)  # older than max_pending_age by Telnyx's clock
        later_call, later = start_recording(sandbox)  # a newer recording moves the frontier past the bound
        sandbox.hangup(later_call)
        await until(lambda: len(running.events) >= 1)
        count = polls(sandbox)
        await until(lambda: polls(sandbox) >= count + 3)
        await running.stop()
    assert running.sids() == [later]
    assert stuck not in json.loads(store.values[STATE_KEY])["pending"]
    warnings = [record.getMessage() for record in caplog.records if "Gave up" in record.getMessage()]
    assert len(warnings) == 1
    assert stuck in warnings[0]
    sandbox.hangup(stuck_call)


def test_since_across_a_dst_change_is_the_instant_it_names():
    """The autumn hour that happens twice (Europe/Berlin, 25 Oct 2026): each reading is its own instant, and
    the same instant in any zone or form is the same watcher (the same shared key)."""
    from zoneinfo import ZoneInfo

    berlin = ZoneInfo("Europe/Berlin")
    first = datetime(2026, 10, 25, 2, 30, tzinfo=berlin, fold=0)  # still summer time: 00:30 UTC
    second = datetime(2026, 10, 25, 2, 30, tzinfo=berlin, fold=1)  # winter time again: 01:30 UTC
    made = [RecordingsFinishedTrigger(account_sid="acc", since=since) for since in (first, second)]
    assert [trigger.serialize()[1]["since"] for trigger in made] == [
        "2026-10-25T00:30:00+00:00",
        "2026-10-25T01:30:00+00:00",
    ]
    same = RecordingsFinishedTrigger(account_sid="acc", since="2026-10-25T02:30:00+01:00")
    assert same.shared_stream_key() == made[1].shared_stream_key() != made[0].shared_stream_key()
    restored = RecordingsFinishedTrigger(**made[0].serialize()[1])
    assert restored.since == first.astimezone(timezone.utc)  # (an ambiguous time never equals another zone)
