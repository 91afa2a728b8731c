"""Review of shared polls (issue 17): each wait behaves as it did polling on its own, under the conditions a
triggerer meets (restarts past a deadline, foreign recordings in the listing, cancellations, rate limits)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from datetime import datetime, timezone

import pytest

from telnyx_provider.hooks.recording import RecordingHook
from telnyx_provider.triggers import shared_polls
from telnyx_provider.triggers.recording import RecordingCompletedTrigger
from tests.conftest import ACCOUNT_SID
from tests.hooks.test_recording_hook import DOCS_REPLY
from tests.sandbox.conftest import wait_for
from tests.scripted_api import Reply

#: A date no ``datetime`` in UTC can hold (year 1, one hour ahead of UTC).
OUT_OF_RANGE = "0001-01-01T00:00:00+01:00"


@pytest.fixture
def make_sandbox(monkeypatch):
    """``make(**Sandbox kwargs)``: a sandbox ``telnyx_default`` points at (``sb.use(shared)`` sets the
    connection's ``shared_polls``, true at first), stopped at the end."""
    from telnyx_provider.sandbox import Sandbox

    started = []

    def make(**kwargs):
        sb = Sandbox(port=0, processing_delay=0.1, **kwargs).start()
        started.append(sb)
        base = json.loads(sb.airflow_conn_json())

        def use(shared: bool) -> None:
            conn = {**base, "extra": {**base["extra"], "shared_polls": shared}}
            monkeypatch.setenv("AIRFLOW_CONN_TELNYX_DEFAULT", json.dumps(conn))

        sb.use = use
        use(True)
        return sb

    yield make
    for sb in started:
        sb.stop()


@pytest.fixture
def sandbox(make_sandbox):
    return make_sandbox()


def completed_recording(sb) -> str:
    call = sb.create_call()
    sid = RecordingHook().start_call_recording(call, play_beep=False)["sid"]
    sb.hangup(call)
    wait_for(lambda: RecordingHook().get_recording(sid)["status"] == "completed")
    return str(sid)


async def until(condition, limit: float = 30.0) -> None:
    """Let the event loop run until ``condition()`` holds (an assertion error after ``limit`` seconds)."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def first_event(trigger: RecordingCompletedTrigger, limit: float = 30.0) -> dict:
    return (await asyncio.wait_for(trigger.run().__anext__(), limit)).payload


@pytest.mark.parametrize("shared", [False, True], ids=["own", "shared"])
@pytest.mark.parametrize("deadline_in", [-60.0, 0.3], ids=["past-on-restart", "before-first-round"])
async def test_a_wait_looks_once_at_its_deadline_before_timing_out(sandbox, shared, deadline_in):
    """A triggerer restarted after a wait's deadline (or a deadline before the poll's next round): the wait
    polling on its own looks once more at the deadline and reports a recording that completed meanwhile; a
    shared wait must too, not time out without a look."""
    sandbox.use(shared)
    sid = completed_recording(sandbox)
    trigger = RecordingCompletedTrigger(sid, poll_interval=5.0, deadline=time.time() + deadline_in)
    event = await first_event(trigger)
    assert event["status"] == "success", event
    assert event["recording"]["sid"] == sid


async def test_a_foreign_recording_with_an_unreadable_date_ends_no_wait(scripted_api):
    """Another recording of the account whose date is out of datetime's range (year 1 ahead of UTC) is in
    the listing: each wait polling on its own never sees it, so a shared poll must not end every wait."""
    base = f"/texml/Accounts/{ACCOUNT_SID}/Recordings"
    sids = [f"00000000-0000-4000-8000-{i:012d}" for i in range(3)]
    now = datetime.now(timezone.utc).strftime("%a, %d %b %Y %H:%M:%S +0000")
    ours = [{**DOCS_REPLY, "sid": sid, "status": "completed", "date_created": now} for sid in sids]
    foreign = {**DOCS_REPLY, "sid": "ffffffff-0000-4000-8000-000000000000", "date_updated": OUT_OF_RANGE}
    page = {"recordings": [foreign, *ours], "page": 0, "page_size": 250, "next_page_uri": None}
    scripted_api.script("GET", f"{base}.json", Reply(200, page))
    for recording in ours:
        scripted_api.script("GET", f"{base}/{recording['sid']}.json", Reply(200, recording))
    events = await asyncio.gather(
        *(first_event(RecordingCompletedTrigger(sid, poll_interval=0.3)) for sid in sids)
    )
    assert [event["status"] for event in events] == ["success"] * 3, events
    assert scripted_api.count("GET", f"{base}.json") >= 1  # the listing was read, foreign recording and all


async def test_a_wait_that_leaves_while_its_get_is_under_way_leaves_nothing_in_the_poll(make_sandbox):
    """A contact centre's poll never stops (some wait is always there): what it keeps of a wait that left
    (cancelled: the task was killed or the trigger moved) must go with it, also when its GET was under way."""
    sb = make_sandbox(list_lag=60.0, slow_seconds=1.0)  # the listings miss them: each is fetched
    hook = RecordingHook()
    left, stays = (hook.start_call_recording(sb.create_call(), play_beep=False)["sid"] for _ in range(2))
    sb.inject("GET /Recordings/{sid}", "slow", count=100)
    waits = {
        sid: asyncio.ensure_future(RecordingCompletedTrigger(sid, poll_interval=0.2).run().__anext__())
        for sid in (left, stays)
    }
    try:
        await until(lambda: sb.stats()["gets_per_recording"].get(left, 0) >= 1)
        (poll,) = shared_polls._POLLS.values()
        assert left in poll._busy  # its GET is under way (the reply is held 1 s)
        waits[left].cancel()
        await asyncio.gather(waits[left], return_exceptions=True)
        while left in poll._busy:  # the GET's reply came
            await asyncio.sleep(0.01)
        assert left not in poll._looked
        assert left not in poll._created
        assert stays in poll._waiters
    finally:
        for wait in waits.values():
            wait.cancel()
        await asyncio.gather(*waits.values(), return_exceptions=True)


@pytest.mark.parametrize("shared", [False, True], ids=["own", "shared"])
@pytest.mark.parametrize("asked", ["inf", "Infinity", "nan", "1e400"])
async def test_a_rate_limit_reply_asking_for_no_finite_wait_holds_nobody_for_ever(
    scripted_api, shared, asked
):
    """A 429 whose ``Retry-After`` is no finite number of seconds: read as not said (the backoff, one second
    at the rate gate), never as "wait for ever" (which held every wait sharing the client, for ever)."""
    if not shared:
        conn = json.loads(os.environ["AIRFLOW_CONN_TELNYX_DEFAULT"])
        os.environ["AIRFLOW_CONN_TELNYX_DEFAULT"] = json.dumps({**conn, "extra": {"shared_polls": False}})
    sid = "00000000-0000-4000-8000-000000000001"
    path = f"/texml/Accounts/{ACCOUNT_SID}/Recordings/{sid}.json"
    scripted_api.script(
        "GET",
        path,
        Reply(429, {"errors": [{"code": "10011"}]}, {"Retry-After": asked}),
        Reply(200, {**DOCS_REPLY, "sid": sid, "status": "completed"}),
    )
    event = await first_event(RecordingCompletedTrigger(sid, poll_interval=0.2), limit=20)
    assert event["status"] == "success", event
    assert scripted_api.count("GET", path) == 2
