"""Exactly the right recording, in the world Telnyx really is: two one-track starts on one call, lost replies
before and after the service acts, a 504, a list that lags, a clock that differs.

Real HTTP against the sandbox. Telnyx's fetch and list replies carry no ``track`` (only the create reply
does), and the provider never reads one there: ownership rests on the reply, the start's token, or — for a
``both``-track start — the sole new match. The proof is on the sandbox's side (``started_on``: what it
started on each call, and with which track), against what each start asked for and got back.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import pytest
import requests

from telnyx_provider.errors import AmbiguousStartError, UncertainStartError
from telnyx_provider.hooks.recording import RecordingHook
from telnyx_provider.retry import RetryPolicy
from tests.reliability.conftest import started_on

# Starts and adoptions judge dates (start_time, DateCreated): both of the formats Telnyx writes.
pytestmark = pytest.mark.both_date_formats

START_ROUTE = "POST /Calls/{call_sid}/Recordings"


def quick_hook(adoption_wait=3.0):
    policy = RetryPolicy(max_retries=40, max_wait=0.05, budget=30.0, initial_wait=0.01)
    return RecordingHook(retry_policy=policy, adoption_wait=adoption_wait)


def start_both_tracks(call, callback_url=None):
    """Start an inbound and an outbound recording on ``call`` at the same moment, from two threads.

    :return: track -> the recording returned, or the error raised.
    """
    barrier = threading.Barrier(2)

    def start(track):
        barrier.wait()
        try:
            return quick_hook().start_call_recording(
                call,
                recording_channels="single",
                recording_track=track,
                recording_status_callback=callback_url,
            )
        except UncertainStartError as error:
            return error

    with ThreadPoolExecutor(2) as pool:
        futures = {track: pool.submit(start, track) for track in ("inbound", "outbound")}
        return {track: future.result(timeout=90) for track, future in futures.items()}


FAULTS = [
    pytest.param({}, ("reset_before", "reset_after"), id="reset-before+reset-after"),
    pytest.param({}, ("reset_after", "reset_after"), id="both-replies-lost"),
    pytest.param({}, ("504", "reset_after"), id="504+reset-after"),
    pytest.param(
        {"list_lag": 2.0, "clock_skew": 30.0}, ("reset_after", "reset_before"), id="lag-2s+skew+30s"
    ),
    pytest.param({"list_lag": 2.0, "clock_skew": -30.0}, ("503", "reset_after"), id="lag-2s+skew-30s+503"),
]


@pytest.mark.parametrize(("world", "faults"), FAULTS)
def test_two_one_track_starts_without_a_token_never_take_each_others_recording(faulty_sandbox, world, faults):
    # Point 1: no visible field tells the inbound recording from the outbound one. A start whose reply was
    # lost never adopts: it names the candidates (or says nothing was seen), and never sends again.
    sandbox = faulty_sandbox(**world)
    call = sandbox.create_call()
    for kind in faults:
        sandbox.inject(START_ROUTE, kind)

    outcomes = start_both_tracks(call)

    truth = started_on(sandbox, call)
    for track, outcome in outcomes.items():
        if isinstance(outcome, dict):
            assert truth[outcome["sid"]] == track  # never the other track's recording
        else:
            assert "may have gone through" in str(outcome)
    assert sorted(truth.values()).count("inbound") <= 1  # no duplicate
    assert sorted(truth.values()).count("outbound") <= 1
    assert any(isinstance(outcome, UncertainStartError) for outcome in outcomes.values())


@pytest.mark.parametrize(("world", "faults"), FAULTS)
def test_two_one_track_starts_in_exact_mode_each_get_their_own(faulty_sandbox, receiver, world, faults):
    sandbox = faulty_sandbox(**world)
    call = sandbox.create_call()
    for kind in faults:
        sandbox.inject(START_ROUTE, kind)

    outcomes = start_both_tracks(call, receiver.callback_url)

    assert all(isinstance(outcome, dict) for outcome in outcomes.values()), outcomes  # no ambiguity
    truth = started_on(sandbox, call)
    assert truth == {outcomes["inbound"]["sid"]: "inbound", outcomes["outbound"]["sid"]: "outbound"}
    assert sandbox.stats()["starts_per_call"] == {call: 2}  # no duplicate, none lost


def _post_start(sandbox, hook, call, **form):
    """Another start on the call, straight over HTTP (its reply received: it knows its recording)."""
    url = hook.config.url(
        f"/texml/Accounts/{sandbox.account_sid}/Calls/{quote(call, safe='')}/Recordings.json"
    )
    reply = requests.post(url, data=form, headers={"Authorization": f"Bearer {sandbox.api_key}"})
    assert reply.status_code == 200
    return reply.json()["sid"]


def test_a_start_after_a_plain_failure_never_takes_a_later_starts_recording(faulty_sandbox, when):
    # Point 2: start A gets a 503 (nothing started); start B, same parameters, starts a second later. A
    # sees one new matching recording, B's: it names it and adopts nothing.
    sandbox = faulty_sandbox()
    call = sandbox.create_call()
    hook = quick_hook(adoption_wait=3.0)
    sandbox.inject(START_ROUTE, "503")
    other = {}
    when(
        lambda: sandbox.stats()["faults_injected"].get("503", 0) >= 1,
        lambda: (
            time.sleep(1.0),
            other.update(sid=_post_start(sandbox, hook, call, RecordingTrack="inbound")),
        ),
    )

    with pytest.raises(AmbiguousStartError) as raised:
        hook.start_call_recording(call, recording_track="inbound")

    assert other["sid"] in str(raised.value)
    assert list(started_on(sandbox, call)) == [other["sid"]]  # A sent nothing again


def test_a_recording_hidden_by_the_list_lag_at_snapshot_time_is_never_taken(faulty_sandbox):
    # Point 2, second half: B's recording started just before A's snapshot, which the 2 s lag hides from it.
    sandbox = faulty_sandbox(list_lag=2.0)
    call = sandbox.create_call()
    hook = quick_hook(adoption_wait=4.0)
    other = _post_start(sandbox, hook, call, RecordingTrack="inbound")
    sandbox.inject(START_ROUTE, "reset_before")

    with pytest.raises(AmbiguousStartError) as raised:
        hook.start_call_recording(call, recording_track="inbound")

    assert other in str(raised.value)
    assert list(started_on(sandbox, call)) == [other]


def test_in_exact_mode_a_later_start_with_the_same_parameters_is_never_taken(faulty_sandbox, receiver, when):
    sandbox = faulty_sandbox(list_lag=2.0)
    call = sandbox.create_call()
    hook = quick_hook(adoption_wait=2.0)
    sandbox.inject(START_ROUTE, "503")
    other = {}
    when(
        lambda: sandbox.stats()["faults_injected"].get("503", 0) >= 1,
        lambda: other.update(sid=_post_start(sandbox, hook, call, RecordingTrack="inbound")),
    )

    ours = hook.start_call_recording(
        call, recording_track="inbound", recording_status_callback=receiver.callback_url
    )

    assert ours["sid"] != other["sid"]
    assert set(started_on(sandbox, call)) == {ours["sid"], other["sid"]}


def test_a_both_track_start_adopts_the_sole_new_match_and_names_its_evidence(faulty_sandbox, caplog):
    sandbox = faulty_sandbox(list_lag=1.0, clock_skew=-30.0)
    call = sandbox.create_call()
    sandbox.inject(START_ROUTE, "reset_after")
    caplog.set_level("WARNING", logger="telnyx_provider")

    recording = quick_hook(adoption_wait=3.0).start_call_recording(call)

    assert list(started_on(sandbox, call)) == [recording["sid"]]
    adopted = [r.getMessage() for r in caplog.records if "Adopting recording" in r.getMessage()]
    assert len(adopted) == 1
    assert "evidence: the sole recording on the call that is new since the start's snapshot" in adopted[0]


def test_two_both_track_starts_with_lost_replies_are_named_not_picked(faulty_sandbox):
    # Two starts with the same parameters from the same snapshot (the same moment): the other one's
    # request was carried out too. Seeing two new matching recordings, this start cannot tell which is its
    # own: it says so, naming both, and sends nothing again.
    sandbox = faulty_sandbox()
    call = sandbox.create_call()
    hook = quick_hook(adoption_wait=1.0)
    snapshot = hook.call_recording_sids(call)
    other = _post_start(sandbox, hook, call)
    sandbox.inject(START_ROUTE, "reset_after")

    with pytest.raises(AmbiguousStartError) as raised:
        hook.start_call_recording(call, snapshot=snapshot)

    started = set(started_on(sandbox, call))
    assert len(started) == 2
    assert other in started
    assert all(sid in str(raised.value) for sid in started)
    assert sandbox.stats()["requests_by_route"][START_ROUTE] == 2  # ours was not sent again
