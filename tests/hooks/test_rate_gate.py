"""RateGate, and the async client's requests waiting at it together (loopback HTTP)."""

from __future__ import annotations

import asyncio
import time

import pytest

from telnyx_provider.connection import TelnyxConnectionConfig
from telnyx_provider.errors import TelnyxApiError
from telnyx_provider.hooks.rate_gate import DEFAULT_CLOSE_SECONDS, GateClosed, RateGate
from telnyx_provider.hooks.recording_async import AsyncRecordingClient
from telnyx_provider.retry import RetryPolicy
from tests.conftest import ACCOUNT_SID, SECRET_KEY
from tests.hooks.test_recording_hook import DOCS_REPLY, RECORDING_SID
from tests.scripted_api import Reply

PATH = f"/texml/Accounts/{ACCOUNT_SID}/Recordings/{RECORDING_SID}.json"
LIMITED = {"errors": [{"code": "10011", "title": "Too many requests"}]}


@pytest.mark.parametrize(
    ("status", "headers", "closed"),
    [
        (429, {"Retry-After": "2"}, 2.0),
        (429, {"x-ratelimit-reset": "3"}, 3.0),
        (429, {}, DEFAULT_CLOSE_SECONDS),
        (200, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "4"}, 4.0),
        (200, {"x-ratelimit-remaining": "0"}, 0.0),  # none left, no word on when: the next 429 says
        (200, {"x-ratelimit-remaining": "7", "x-ratelimit-reset": "4"}, 0.0),
        (503, {"Retry-After": "9"}, 0.0),  # an outage is the retry policy's, not a rate limit
    ],
)
def test_what_closes_the_gate(status, headers, closed):
    gate = RateGate()
    gate.observe(status, headers)
    assert gate.closed_for() == pytest.approx(closed, abs=0.1)


async def test_requests_wait_for_the_gate_then_one_probe_goes_first():
    gate = RateGate()
    gate.observe(429, {"Retry-After": "0.2"})
    began = time.monotonic()
    entered: list[tuple[int, bool, float]] = []

    async def request(index: int) -> None:
        probe = await gate.enter()
        entered.append((index, probe, time.monotonic() - began))
        if probe:
            await asyncio.sleep(0.1)  # the probe's reply takes a while; nobody else goes meanwhile
            gate.observe(200, {})
        gate.leave(probe)

    await asyncio.gather(*(request(i) for i in range(20)))
    assert [probe for _, probe, _ in entered].count(True) == 1
    assert entered[0][1] is True
    assert entered[0][2] >= 0.19
    assert all(at >= 0.29 for _, _, at in entered[1:])


async def test_a_probe_refused_again_closes_the_gate_again():
    gate = RateGate()
    gate.observe(429, {"Retry-After": "0.1"})
    probe = await gate.enter()
    assert probe is True
    follower = asyncio.ensure_future(gate.enter())
    await asyncio.sleep(0.05)
    assert not follower.done()
    gate.observe(429, {"Retry-After": "0.3"})
    gate.leave(probe)
    began = time.monotonic()
    assert await follower is True  # the next one is the next probe, after the new wait
    assert time.monotonic() - began >= 0.25


async def test_a_request_that_may_not_wait_that_long_is_told_at_once():
    gate = RateGate()
    gate.observe(429, {"Retry-After": "30"})
    began = time.monotonic()
    with pytest.raises(GateClosed) as closed:
        await gate.enter(limit=time.monotonic() + 1)
    assert closed.value.seconds == pytest.approx(30, abs=0.5)
    assert time.monotonic() - began < 0.5


async def test_one_429_holds_every_request_of_the_client(scripted_api):
    """Thirty requests in flight together: one gets a 429 asking for a second, and from then on nothing is
    sent until that second is over; then one request goes first and the others follow its reply."""
    scripted_api.script(
        "GET",
        PATH,
        Reply(429, LIMITED, {"Retry-After": "1"}),
        Reply(200, {**DOCS_REPLY, "status": "in-progress"}),
    )
    config = TelnyxConnectionConfig(
        conn_id="t", base_url=scripted_api.base_url, api_key=SECRET_KEY, account_sid=ACCOUNT_SID, pool_size=1
    )
    client = AsyncRecordingClient(config)
    try:
        await asyncio.gather(*(client.get_recording(RECORDING_SID) for _ in range(30)))
    finally:
        await client.aclose()
    arrivals = [seen.at for seen in scripted_api.seen]
    refused = arrivals[0]
    assert len(arrivals) == 31  # thirty looks, one of them retried once
    assert all(at - refused >= 0.95 for at in arrivals[1:])  # nothing else during the second asked for


async def test_a_request_held_longer_than_its_budget_fails_without_being_sent(scripted_api):
    scripted_api.script("GET", PATH, Reply(429, LIMITED, {"Retry-After": "30"}))
    config = TelnyxConnectionConfig(
        conn_id="t", base_url=scripted_api.base_url, api_key=SECRET_KEY, account_sid=ACCOUNT_SID
    )
    client = AsyncRecordingClient(config)
    policy = RetryPolicy(max_retries=3, budget=1.0)
    try:
        with pytest.raises(TelnyxApiError) as first:
            await client.get_recording(RECORDING_SID, retry_policy=policy)
        assert first.value.status == 429
        with pytest.raises(TelnyxApiError) as held:
            await client.get_recording(RECORDING_SID, retry_policy=policy)
    finally:
        await client.aclose()
    assert held.value.status is None
    assert held.value.failure == "rate_limited"
    assert "not sent" in str(held.value)
    assert scripted_api.count("GET", PATH) == 1
