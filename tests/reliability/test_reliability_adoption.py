"""No duplicate recordings: a start whose reply is lost is adopted only on evidence, never repeated blindly.

Against the real sandbox over HTTP, with its faults: a connection reset *after* the start was carried out
(the reply is lost, the recording exists), a reply slower than the read timeout, 5xx replies, and refusals
that started nothing. Default mode (no token) and exact mode (the real receiver on loopback, a token per
attempt). The proof is the sandbox's own count of starts per call.
"""

from __future__ import annotations

import logging
import re
import time

import pendulum
import pytest
import requests

from telnyx_provider.errors import TelnyxApiError, UncertainStartError
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


def test_reset_before_the_start_was_carried_out_is_never_sent_again_without_a_token(faulty_sandbox, caplog):
    # Point 7: a reset may come before or after the service acted; without a token nothing can tell which,
    # and a list that lags longer than the look would make a second POST a second recording.
    sandbox = faulty_sandbox()
    call = sandbox.create_call()
    sandbox.inject(START_ROUTE, "reset_before")  # dropped before the service saw it
    caplog.set_level(logging.INFO, logger="telnyx_provider")

    with pytest.raises(UncertainStartError) as raised:
        RecordingHook(adoption_wait=0.3, retry_policy=quick_policy()).start_call_recording(call)

    assert posts(sandbox) == 1
    assert not adoption_records(caplog)
    message = str(raised.value)
    assert "may have gone through" in message
    assert "recordings there: none" in message  # what was seen on the call (point 8)
    assert "not sent again" in message


def test_a_list_lagging_longer_than_adoption_wait_never_makes_a_second_recording(faulty_sandbox):
    # Point 7: the recording exists but stays out of the list for 3 s; the start looks for 0.5 s.
    sandbox = faulty_sandbox(list_lag=3.0)
    call = sandbox.create_call()
    sandbox.inject(START_ROUTE, "reset_after")
    with pytest.raises(UncertainStartError, match="may have gone through"):
        RecordingHook(adoption_wait=0.5, retry_policy=quick_policy()).start_call_recording(call)
    assert posts(sandbox) == 1
    assert sandbox.stats()["starts_per_call"] == {call: 1}


def test_reset_before_in_exact_mode_is_sent_again_with_a_new_token(faulty_sandbox, receiver, caplog):
    sandbox = faulty_sandbox()
    call = sandbox.create_call()
    sandbox.inject(START_ROUTE, "reset_before")
    caplog.set_level(logging.INFO, logger="telnyx_provider")

    recording = RecordingHook(adoption_wait=0.5, retry_policy=quick_policy()).start_call_recording(
        call, recording_status_callback=receiver.callback_url
    )

    assert sandbox.stats()["starts_per_call"] == {call: 1}
    assert posts(sandbox) == 2
    assert not adoption_records(caplog)
    assert any("sending it again with a new token" in r.getMessage() for r in caplog.records)
    [started] = sandbox.started_on(call)
    assert started["sid"] == recording["sid"]
    assert "start_token=" in started["callback_url"]


def test_reset_after_in_exact_mode_is_adopted_on_its_token(faulty_sandbox, receiver, caplog):
    # A list lagging longer than adoption_wait and a one-track start: visible fields could prove nothing.
    sandbox = faulty_sandbox(list_lag=3.0)
    call = sandbox.create_call()
    sandbox.inject(START_ROUTE, "reset_after")
    caplog.set_level(logging.INFO, logger="telnyx_provider")

    recording = RecordingHook(adoption_wait=2.0, retry_policy=quick_policy()).start_call_recording(
        call, recording_track="inbound", recording_status_callback=receiver.callback_url
    )

    assert posts(sandbox) == 1
    assert [item["sid"] for item in sandbox.started_on(call)] == [recording["sid"]]
    [adopted] = adoption_records(caplog)
    assert "evidence: its start token" in adopted.getMessage()
    assert sandbox.stats()["requests_by_route"].get("GET /Calls/{call_sid}/Recordings", 0) == 0  # no snapshot


@pytest.mark.parametrize("kind", ["500", "503"])
def test_server_errors_on_start_without_a_token_are_not_sent_again(faulty_sandbox, kind):
    sandbox = faulty_sandbox()
    call = sandbox.create_call()
    sandbox.inject(START_ROUTE, kind, count=3)
    with pytest.raises(UncertainStartError, match=f"HTTP {kind}.*may have gone through"):
        RecordingHook(adoption_wait=0.05, retry_policy=quick_policy()).start_call_recording(call)
    assert posts(sandbox) == 1
    assert sandbox.stats()["starts_per_call"] == {}


@pytest.mark.parametrize("kind", ["500", "503"])
def test_server_errors_on_start_in_exact_mode_lead_to_exactly_one_recording(faulty_sandbox, receiver, kind):
    sandbox = faulty_sandbox()
    call = sandbox.create_call()
    sandbox.inject(START_ROUTE, kind, count=3)
    recording = RecordingHook(adoption_wait=0.3, retry_policy=quick_policy()).start_call_recording(
        call, recording_status_callback=receiver.callback_url
    )
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
    assert "Check the call's recordings" in str(error)
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


def test_a_failing_look_up_is_retried_and_the_start_never_sent_again(telnyx_conn, requests_mock):
    requests_mock.post(START_URL, [{"status_code": 500, "text": "oops"}, {"json": _fresh()}])
    requests_mock.get(START_URL, [_listing(), {"status_code": 503, "text": "busy"}, _listing()])
    with pytest.raises(UncertainStartError) as raised:
        RecordingHook(adoption_wait=0.01, retry_policy=quick_policy()).start_call_recording("v3:call")
    # snapshot, start (500), a look that fails and is retried, nothing new: not sent again
    methods = [r.method for r in requests_mock.request_history]
    assert methods[:4] == ["GET", "POST", "GET", "GET"]
    assert methods.count("POST") == 1
    assert "may have gone through" in str(raised.value)


def test_a_start_that_may_have_gone_through_is_not_reported_as_a_failed_listing(telnyx_conn, requests_mock):
    # Point 8: reset after the POST, then every look fails with a 503: the error is about the start.
    requests_mock.post(START_URL, exc=requests.ConnectionError("Connection reset by peer"))
    requests_mock.get(START_URL, [_listing(), *[{"status_code": 503, "text": "busy"}] * 200])
    with pytest.raises(UncertainStartError) as raised:
        RecordingHook(adoption_wait=0.2, retry_policy=quick_policy(budget=3)).start_call_recording("v3:call")
    message = str(raised.value)
    assert message.startswith("Telnyx API error: no reply on POST")
    assert "may have gone through" in message
    assert "could not be read" in message
    assert "HTTP 503" in message
    assert [r.method for r in requests_mock.request_history].count("POST") == 1


def test_a_late_recording_of_an_earlier_attempt_is_stopped_as_superseded(faulty_sandbox, receiver, caplog):
    # Exact mode: the first POST's reply is lost and its callback is held up past adoption_wait (the
    # receiver's store is slow), so the start is sent again. When the first callback lands, its token
    # proves that recording is this start's too: it is stopped, never left running.
    import threading

    sandbox = faulty_sandbox()
    call = sandbox.create_call()
    sandbox.inject(START_ROUTE, "reset_after")
    released = threading.Event()
    add = receiver.store.add_if_absent

    def slow_add(*args, **kwargs):
        released.wait(10)
        return add(*args, **kwargs)

    receiver.store.add_if_absent = slow_add
    caplog.set_level(logging.INFO, logger="telnyx_provider")
    when = threading.Timer(1.5, released.set)
    when.start()
    try:
        recording = RecordingHook(adoption_wait=1.0, retry_policy=quick_policy()).start_call_recording(
            call, recording_status_callback=receiver.callback_url
        )
    finally:
        when.cancel()
        released.set()

    started = [item["sid"] for item in sandbox.started_on(call)]
    assert len(started) == 2
    assert recording["sid"] == started[1]
    first = RecordingHook().get_recording(started[0])
    assert first["status"] in ("stopped", "completed")
    assert any("Stopped recording " + started[0] in r.getMessage() for r in caplog.records)


def test_exact_mode_works_across_api_server_workers(faulty_sandbox, tmp_path, monkeypatch, caplog):
    # Two receivers (two API-server workers), each with its own engine on one database: Telnyx calls the
    # first, the workers ask the second (the connection extra receiver_url).
    import json

    from tests.receiver_app import ReceiverServer, sqlite_store

    database = str(tmp_path / "metadata.db")
    called, asked = (
        ReceiverServer(sqlite_store(database)).start(),
        ReceiverServer(sqlite_store(database)).start(),
    )
    try:
        sandbox = faulty_sandbox()
        conn = json.loads(sandbox.airflow_conn_json())
        conn["extra"]["receiver_url"] = f"http://127.0.0.1:{asked.port}/telnyx"
        monkeypatch.setenv("AIRFLOW_CONN_TELNYX_DEFAULT", json.dumps(conn))
        call = sandbox.create_call()
        sandbox.inject(START_ROUTE, "reset_after")
        caplog.set_level(logging.INFO, logger="telnyx_provider")

        recording = RecordingHook(adoption_wait=3.0, retry_policy=quick_policy()).start_call_recording(
            call, recording_track="outbound", recording_status_callback=called.callback_url
        )
    finally:
        called.stop()
        asked.stop()

    assert posts(sandbox) == 1
    assert [item["sid"] for item in sandbox.started_on(call)] == [recording["sid"]]
    [adopted] = adoption_records(caplog)
    assert "evidence: its start token" in adopted.getMessage()


def test_the_journal_hears_each_attempt_before_it_is_sent_and_a_refused_token_is_reused(
    faulty_sandbox, receiver
):
    # 429 twice: a definite no, nothing started, so the next attempt reuses the token.
    sandbox = faulty_sandbox(retry_after=0)
    call = sandbox.create_call()
    sandbox.inject(START_ROUTE, "429", count=2)
    heard = []

    class Journal:
        def sending(self, token):
            heard.append(("sending", token, posts(sandbox)))

        def refused(self, error):
            heard.append(("refused", error.status, posts(sandbox)))

        def reply_lost(self, error):
            heard.append(("reply_lost", error.failure, posts(sandbox)))

    RecordingHook(adoption_wait=1.0, retry_policy=quick_policy()).start_call_recording(
        call, recording_status_callback=receiver.callback_url, journal=Journal()
    )

    tokens = {entry[1] for entry in heard if entry[0] == "sending"}
    assert len(tokens) == 1
    assert [entry[0] for entry in heard] == ["sending", "refused", "sending", "refused", "sending"]
    assert [entry[2] for entry in heard if entry[0] == "sending"] == [0, 1, 2]  # told before each POST
