"""Exactly the right recording, in a harsh world: several recordings on one call, lost replies before and
after the service acts, a list that lags, a clock that differs.

Real HTTP against the sandbox. The proof is on the sandbox's side: what it started on each call, and the
track of each recording, against what each start asked for and got back.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import pytest
import requests

from telnyx_provider.errors import AmbiguousStartError
from telnyx_provider.hooks.recording import RecordingHook
from telnyx_provider.retry import RetryPolicy

# Starts and adoptions judge dates (start_time, DateCreated): both of the formats Telnyx writes.
pytestmark = pytest.mark.both_date_formats

START_ROUTE = "POST /Calls/{call_sid}/Recordings"


def quick_hook(adoption_wait=5.0):
    policy = RetryPolicy(max_retries=40, max_wait=0.05, budget=30.0, initial_wait=0.01)
    return RecordingHook(retry_policy=policy, adoption_wait=adoption_wait)


def start_both_tracks(call):
    """Start an inbound and an outbound recording on ``call`` at the same moment, from two threads."""
    barrier = threading.Barrier(2)

    def start(track):
        barrier.wait()
        return quick_hook().start_call_recording(call, recording_channels="single", recording_track=track)

    with ThreadPoolExecutor(2) as pool:
        inbound, outbound = pool.submit(start, "inbound"), pool.submit(start, "outbound")
        return inbound.result(timeout=60), outbound.result(timeout=60)


def tracks_on(sandbox, call, limit=10.0):
    """recording sid -> track, as the sandbox holds them (not as any client reported them).

    Read once the list shows every recording the sandbox started on the call (it may lag behind).
    """
    deadline = time.monotonic() + limit
    while True:
        listing = quick_hook().list_call_recordings(call, account_sid=sandbox.account_sid)
        started = sandbox.stats()["starts_per_call"].get(call, 0)
        if len(listing) >= started or time.monotonic() > deadline:
            return {recording["sid"]: recording["track"] for recording in listing}
        time.sleep(0.1)


@pytest.mark.parametrize(
    "faults",
    [
        ("reset_before", "reset_after"),  # one start never reaches the service, the other's reply is lost
        ("reset_after", "reset_after"),  # both replies lost after the service acted
        ("reset_before", "reset_before"),
        ("503", "reset_after"),
    ],
)
def test_two_tracks_started_together_each_get_their_own_recording(faulty_sandbox, faults):
    sandbox = faulty_sandbox()
    call = sandbox.create_call()
    for kind in faults:
        sandbox.inject(START_ROUTE, kind)

    inbound, outbound = start_both_tracks(call)

    assert inbound["sid"] != outbound["sid"]
    assert sandbox.stats()["starts_per_call"] == {call: 2}  # no duplicate, none lost
    held = tracks_on(sandbox, call)
    assert held == {inbound["sid"]: "inbound", outbound["sid"]: "outbound"}


@pytest.mark.parametrize(("list_lag", "clock_skew"), [(2.0, 30.0), (2.0, -30.0)])
def test_a_lagging_list_and_a_skewed_clock_cause_no_duplicate_and_no_wrong_adoption(
    faulty_sandbox, list_lag, clock_skew
):
    sandbox = faulty_sandbox(list_lag=list_lag, clock_skew=clock_skew)
    call = sandbox.create_call()
    sandbox.inject(START_ROUTE, "reset_after")
    sandbox.inject(START_ROUTE, "reset_before")

    inbound, outbound = start_both_tracks(call)

    assert inbound["sid"] != outbound["sid"]
    assert sandbox.stats()["starts_per_call"] == {call: 2}
    assert tracks_on(sandbox, call) == {inbound["sid"]: "inbound", outbound["sid"]: "outbound"}


def test_an_older_recording_with_the_same_parameters_is_never_adopted(faulty_sandbox):
    # A recording with the same parameters started a second before this start: after this start's
    # request is dropped before the service acts, it is sent again, not handed the older one.
    sandbox = faulty_sandbox()
    call = sandbox.create_call()
    older = quick_hook().start_call_recording(call, recording_channels="single", recording_track="inbound")
    time.sleep(1.0)
    sandbox.inject(START_ROUTE, "reset_before")

    ours = quick_hook(adoption_wait=0.5).start_call_recording(
        call, recording_channels="single", recording_track="inbound"
    )

    assert ours["sid"] != older["sid"]
    assert sandbox.stats()["starts_per_call"] == {call: 2}


def test_a_lost_reply_seen_only_after_the_list_catches_up_is_adopted(faulty_sandbox):
    sandbox = faulty_sandbox(list_lag=2.0)
    call = sandbox.create_call()
    sandbox.inject(START_ROUTE, "reset_after")

    recording = quick_hook(adoption_wait=5.0).start_call_recording(call)

    assert sandbox.stats()["starts_per_call"] == {call: 1}
    assert sandbox.stats()["requests_by_route"][START_ROUTE] == 1
    assert recording["call_sid"] == call


def test_two_identical_starts_with_lost_replies_are_named_not_picked(faulty_sandbox):
    # Two starts with the same parameters from the same snapshot (the same moment): the other one's
    # request was carried out too (its reply lost, so it is not known to us). Seeing two new matching
    # recordings, this start cannot tell which is its own: it says so, naming both, and sends nothing again.
    sandbox = faulty_sandbox()
    call = sandbox.create_call()
    hook = quick_hook(adoption_wait=1.0)
    snapshot = hook.call_recording_sids(call)
    url = hook.config.url(
        f"/texml/Accounts/{sandbox.account_sid}/Calls/{quote(call, safe='')}/Recordings.json"
    )
    other = requests.post(
        url, data={"RecordingTrack": "inbound"}, headers={"Authorization": f"Bearer {sandbox.api_key}"}
    )
    assert other.status_code == 200
    sandbox.inject(START_ROUTE, "reset_after")

    with pytest.raises(AmbiguousStartError) as raised:
        hook.start_call_recording(call, recording_track="inbound", snapshot=snapshot)

    started = set(tracks_on(sandbox, call))
    assert len(started) == 2
    assert other.json()["sid"] in started
    assert all(sid in str(raised.value) for sid in started)
    assert sandbox.stats()["requests_by_route"][START_ROUTE] == 2  # ours was not sent again


def test_a_start_that_timed_out_applies_the_same_rule_while_watching(faulty_sandbox):
    # The start is held past the read timeout (a 504-like situation) while another track's recording
    # starts on the call: watching, the hook must not take that one for its own.
    sandbox = faulty_sandbox(extra={"timeout": 0.5}, slow_seconds=1.5)
    call = sandbox.create_call()
    other = quick_hook().start_call_recording(call, recording_channels="single", recording_track="outbound")
    sandbox.inject(START_ROUTE, "slow")

    ours = quick_hook().start_call_recording(call, recording_channels="single", recording_track="inbound")

    assert ours["sid"] != other["sid"]
    assert sandbox.stats()["starts_per_call"] == {call: 2}
    assert tracks_on(sandbox, call)[ours["sid"]] == "inbound"
