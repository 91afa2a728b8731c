"""No duplicate recordings: a start whose reply is lost is adopted, never repeated blindly.

Against the real sandbox over HTTP, with its faults: a connection reset *after* the start was carried out
(the reply is lost, the recording exists), a reply slower than the read timeout, and refusals that started
nothing. The proof is the sandbox's own count of starts per call.
"""

from __future__ import annotations

import logging
import re
import time

import pendulum
import pytest
import requests

from telnyx_provider.errors import TelnyxApiError
from telnyx_provider.hooks.recording import RecordingHook
from telnyx_provider.retry import RetryPolicy

# Starts and adoptions judge dates (start_time, DateCreated): both of the formats Telnyx writes.
pytestmark = pytest.mark.both_date_formats

HOOK_LOGGER = "telnyx_provider.hooks.recording_start"
START_ROUTE = "POST /Calls/{call_sid}/Recordings"


def quick_policy(**changes):
    settings = {"max_retries": 40, "max_wait": 0.05, "budget": 20.0, "initial_wait": 0.01}
    return RetryPolicy(**{**settings, **changes})


def posts(sandbox):
    return sandbox.stats()["requests_by_route"].get(START_ROUTE, 0)


def adoption_records(caplog):
    return [r for r in caplog.records if r.name == HOOK_LOGGER and "Adopting recording" in r.getMessage()]


def test_reset_after_the_start_was_carried_out_is_adopted_not_repeated(faulty_sandbox, caplog):
    sandbox = faulty_sandbox()
    call = sandbox.create_call()
    sandbox.inject(START_ROUTE, "reset_after")  # carried out, reply lost
    caplog.set_level(logging.INFO, logger="telnyx_provider")

    recording = RecordingHook(adoption_wait=0.3, retry_policy=quick_policy()).start_call_recording(call)

    stats = sandbox.stats()
    assert stats["starts_per_call"] == {call: 1}  # one recording, however many starts were sent
    assert posts(sandbox) == 1
    assert stats["resets_after_handling"] == 1
    assert recording["call_sid"] == call
    assert recording["status"] == "in-progress"
    [adopted] = adoption_records(caplog)
    assert adopted.levelno == logging.WARNING
    assert recording["sid"] in adopted.getMessage()
    assert call in adopted.getMessage()


def test_reset_before_the_start_was_carried_out_sends_it_again(faulty_sandbox, caplog):
    sandbox = faulty_sandbox()
    call = sandbox.create_call()
    sandbox.inject(START_ROUTE, "reset_before")  # dropped before the service saw it
    caplog.set_level(logging.INFO, logger="telnyx_provider")

    recording = RecordingHook(adoption_wait=0.3, retry_policy=quick_policy()).start_call_recording(call)

    stats = sandbox.stats()
    assert stats["starts_per_call"] == {call: 1}
    assert stats["resets_after_handling"] == 0
    assert posts(sandbox) == 2
    assert not adoption_records(caplog)
    assert any("sending the start again" in r.getMessage() for r in caplog.records)
    assert recording["status"] == "in-progress"


@pytest.mark.parametrize("kind", ["500", "503"])
def test_server_errors_on_start_lead_to_exactly_one_recording(faulty_sandbox, kind):
    sandbox = faulty_sandbox()
    call = sandbox.create_call()
    sandbox.inject(START_ROUTE, kind, count=3)
    recording = RecordingHook(adoption_wait=0.05, retry_policy=quick_policy()).start_call_recording(call)
    assert sandbox.stats()["starts_per_call"] == {call: 1}
    assert posts(sandbox) == 4
    assert recording["call_sid"] == call


def test_429_on_start_is_retried_without_listing_again(faulty_sandbox):
    sandbox = faulty_sandbox(retry_after=0)
    call = sandbox.create_call()
    sandbox.inject(START_ROUTE, "429", count=2)
    RecordingHook(adoption_wait=0.3, retry_policy=quick_policy()).start_call_recording(call)
    routes = sandbox.stats()["requests_by_route"]
    assert sandbox.stats()["starts_per_call"] == {call: 1}
    # The call is read once, before the first start (the snapshot), and not again: a rate-limited start
    # started nothing, so there is nothing to look for.
    assert routes["GET /Calls/{call_sid}/Recordings"] == 1
    assert posts(sandbox) == 3


def test_start_slower_than_the_read_timeout_is_adopted_when_it_lands(faulty_sandbox, when, caplog):
    # The sandbox holds the start for 1.6 s and carries it out after; the client gives up reading at 1 s.
    # Sending the start again at that point would record the call twice.
    sandbox = faulty_sandbox(extra={"timeout": 1.0}, slow_seconds=1.6)
    call = sandbox.create_call()
    sandbox.inject(START_ROUTE, "slow")
    caplog.set_level(logging.INFO, logger="telnyx_provider")

    began = time.monotonic()
    recording = RecordingHook(
        adoption_wait=0.3, retry_policy=quick_policy(max_wait=0.2)
    ).start_call_recording(call)
    took = time.monotonic() - began

    assert sandbox.stats()["starts_per_call"] == {call: 1}
    assert posts(sandbox) == 1  # the timed-out start was never sent again
    assert took >= 1.6  # it waited for the slow start to land...
    assert took < 6  # ...and no longer than needed
    [adopted] = adoption_records(caplog)
    assert recording["sid"] in adopted.getMessage()
    retries = [r for r in caplog.records if r.name == "telnyx_provider.retry"]
    assert "no reply (timeout)" in retries[0].getMessage()


def test_timed_out_start_is_not_repeated_even_when_the_budget_runs_out(faulty_sandbox, when):
    sandbox = faulty_sandbox(extra={"timeout": 0.4}, slow_seconds=1.5)
    call = sandbox.create_call()
    sandbox.inject(START_ROUTE, "slow")
    hook = RecordingHook(adoption_wait=0.3, retry_policy=quick_policy(budget=1.0, max_wait=0.1))
    with pytest.raises(TelnyxApiError) as raised:
        hook.start_call_recording(call)
    error = raised.value
    assert error.status is None
    assert error.failure == "timeout"
    assert "was not sent again" in str(error)
    assert "check the call's recordings" in str(error)
    assert posts(sandbox) == 1
    deadline = time.monotonic() + 5
    while not sandbox.stats()["starts_per_call"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sandbox.stats()["starts_per_call"] == {call: 1}  # the slow one landed; no second one


def test_a_lost_start_whose_recording_already_ended_is_still_adopted(faulty_sandbox, caplog):
    # The recording lasts 0.2 s and the list shows it only 0.5 s after it started: by the time the lost
    # reply's recording is seen, it has ended. It is still the one this request started.
    sandbox = faulty_sandbox(recording_seconds=0.2, list_lag=0.5)
    call = sandbox.create_call()
    sandbox.inject(START_ROUTE, "reset_after")
    caplog.set_level(logging.WARNING, logger="telnyx_provider")
    recording = RecordingHook(adoption_wait=3, retry_policy=quick_policy()).start_call_recording(call)
    assert sandbox.stats()["starts_per_call"] == {call: 1}
    assert recording["status"] in ("in-progress", "stopped", "completed")
    assert recording["duration"] is not None or recording["status"] != "completed"
    assert adoption_records(caplog)


# -- what each failure of a start leads to (scripted replies) -----------------------------------------

START_URL = re.compile(r".*/Calls/[^/]+/Recordings\.json(\?.*)?$")


def _listing(*recordings):
    return {"json": {"recordings": list(recordings), "page": 0, "page_size": 100}}


def _fresh(status="in-progress"):
    started = pendulum.now("UTC").format("ddd, DD MMM YYYY HH:mm:ss ZZ")
    return {"sid": "rec-1", "status": status, "source": "StartCallRecordingAPI", "start_time": started}


def test_a_gateway_timeout_is_watched_not_repeated(telnyx_conn, requests_mock):
    # 504: the gateway gave up, the service may still be starting the recording. It shows up on the
    # third look; the start is never sent twice.
    requests_mock.post(START_URL, status_code=504, text="<html>Gateway Time-out</html>")
    requests_mock.get(START_URL, [_listing(), _listing(), _listing(), _listing(_fresh())])
    recording = RecordingHook(adoption_wait=0.3, retry_policy=quick_policy(budget=5)).start_call_recording(
        "v3:call"
    )
    assert recording["sid"] == "rec-1"
    assert [r.method for r in requests_mock.request_history] == ["GET", "POST", "GET", "GET", "GET"]


def test_a_start_that_never_left_is_sent_again_without_listing(telnyx_conn, requests_mock):
    requests_mock.post(START_URL, [{"exc": requests.ConnectTimeout("connect timed out")}, {"json": _fresh()}])
    requests_mock.get(START_URL, [_listing()])
    recording = RecordingHook(adoption_wait=0.3, retry_policy=quick_policy()).start_call_recording("v3:call")
    assert recording["sid"] == "rec-1"
    assert [r.method for r in requests_mock.request_history] == ["GET", "POST", "POST"]


def test_a_failing_look_up_is_retried_before_anything_is_sent_again(telnyx_conn, requests_mock):
    requests_mock.post(START_URL, [{"status_code": 500, "text": "oops"}, {"json": _fresh()}])
    requests_mock.get(START_URL, [_listing(), {"status_code": 503, "text": "busy"}, _listing()])
    RecordingHook(adoption_wait=0.01, retry_policy=quick_policy()).start_call_recording("v3:call")
    # snapshot, start (500), a look that fails and is retried, nothing new: sent again
    methods = [r.method for r in requests_mock.request_history]
    assert methods[:4] == ["GET", "POST", "GET", "GET"]
    assert methods[-1] == "POST"
    assert methods.count("POST") == 2
