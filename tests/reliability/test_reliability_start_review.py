"""Exact starts under attack: late and lost callbacks, a receiver that misbehaves, a start token that must
stay secret, retries that must remember every attempt (review of issue 14).

Real HTTP against the sandbox and the real receiver app on loopback. The sandbox holds callbacks back
(``hold_callbacks``) to make them late, as the real service's can be; what happened is read from the
service's side (``started_on``, each recording's status), never from the start's own account of it.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from telnyx_provider.errors import TelnyxApiError, UncertainStartError
from telnyx_provider.hooks.recording import RecordingHook
from telnyx_provider.operators.recording import StartCallRecordingOperator
from telnyx_provider.operators.start_memory import STATE_KEY
from telnyx_provider.retry import RetryPolicy
from tests.reliability.test_reliability_start_retries import DictStore, context

START_ROUTE = "POST /Calls/{call_sid}/Recordings"
UPDATE_ROUTE = "POST /Calls/{call_sid}/Recordings/{sid}"


def quick_policy(**changes: Any) -> RetryPolicy:
    settings = {"max_retries": 40, "max_wait": 0.05, "budget": 20.0, "initial_wait": 0.01}
    return RetryPolicy(**{**settings, **changes})


def tokens_sent(sandbox, call):
    return [item["callback_url"].split("start_token=")[1] for item in sandbox.started_on(call)]


def status(sid):
    return RecordingHook().get_recording(sid)["status"]


def wait_for(condition, limit=20.0):
    deadline = time.monotonic() + limit
    while not (value := condition()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)
    return value


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ends(call, limit):
    """``call()`` on a thread: its result or error, or a failure if it has not ended after ``limit`` s."""
    outcome: dict[str, Any] = {}

    def run():
        try:
            outcome["value"] = call()
        except BaseException as error:  # handed to the test
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit)
    if thread.is_alive():
        pytest.fail(f"the start did not end within {limit:.0f} s")
    return outcome


# -- the start token is a capability: never in a log line, an exception or XCom -------------------------


def test_a_start_token_never_reaches_a_log_line_or_an_error_when_the_receiver_cannot_be_asked(
    faulty_sandbox, caplog, monkeypatch
):
    # The receiver is down; requests' own error message quotes the URL it asked, which holds the token.
    masked: list[str] = []
    monkeypatch.setattr("telnyx_provider.hooks.recording_start.mask_secret", masked.append)
    port = closed_port()
    sandbox = faulty_sandbox(extra={"receiver_url": f"http://127.0.0.1:{port}/telnyx"})
    call = sandbox.create_call()
    sandbox.inject(START_ROUTE, "reset_after")
    caplog.set_level(logging.DEBUG)

    with pytest.raises(UncertainStartError) as raised:
        RecordingHook(adoption_wait=0.3, retry_policy=quick_policy()).start_call_recording(
            call, recording_status_callback=f"http://127.0.0.1:{port}/telnyx/recording-status"
        )

    [token] = tokens_sent(sandbox, call)
    assert any("Could not ask the receiver" in record.getMessage() for record in caplog.records)
    assert token[:16] not in caplog.text  # not even in part
    assert token[:16] not in str(raised.value)
    assert token in masked  # Airflow's secret masker redacts it from anything else the task logs


# -- a receiver that misbehaves (a wrong or hostile receiver_url) --------------------------------------


class BadReceiver:
    """A loopback server answering ``GET /telnyx/starts/...`` badly: ``trickle`` (a byte every 0.3 s, never
    ending) or ``flood`` (a JSON answer that never ends). Records what each request carried."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.sent = 0
        self.headers: list[dict[str, str]] = []
        self.stopping = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                server.headers.append({name.lower(): value for name, value in self.headers.items()})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(2 * 10**8))
                self.end_headers()
                try:
                    self.wfile.write(b'{"start_token": "x", "sightings": [')
                    while not server.stopping.is_set():
                        if server.mode == "trickle":
                            self.wfile.write(b" ")
                            self.wfile.flush()
                            server.sent += 1
                            server.stopping.wait(0.3)
                        else:
                            self.wfile.write(b" " * 65536)
                            server.sent += 65536
                except OSError:
                    pass  # the worker hung up: what it should do

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}/telnyx"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def bad_receiver():
    made: list[BadReceiver] = []

    def make(mode: str) -> BadReceiver:
        made.append(BadReceiver(mode))
        return made[-1]

    yield make
    for server in made:
        server.stop()


@pytest.mark.parametrize("mode", ["trickle", "flood"])
def test_a_receiver_that_never_finishes_its_answer_cannot_hold_or_flood_a_start(
    faulty_sandbox, bad_receiver, mode, tmp_path, monkeypatch
):
    receiver = bad_receiver(mode)
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password netrc-secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    sandbox = faulty_sandbox(extra={"receiver_url": receiver.base})
    call = sandbox.create_call()
    sandbox.inject(START_ROUTE, "reset_after")
    hook = RecordingHook(adoption_wait=0.5, retry_policy=quick_policy())

    outcome = ends(
        lambda: hook.start_call_recording(
            call, recording_status_callback="https://airflow.example/telnyx/recording-status"
        ),
        limit=40,
    )

    assert isinstance(outcome.get("error"), UncertainStartError), outcome
    assert "did not answer" in str(outcome["error"])
    # Each question stopped reading early (what was sent beyond its bound sat in socket buffers at most).
    assert receiver.sent < len(receiver.headers) * 8 * 2**20
    assert receiver.headers  # it was asked ...
    assert all("authorization" not in seen and "cookie" not in seen for seen in receiver.headers)  # ... bare
    assert len(sandbox.started_on(call)) == 1  # and nothing was sent again


# -- errors after a start that may have gone through name what is on the call -------------------------


def test_an_uncertain_exact_start_names_what_is_on_the_call(faulty_sandbox):
    port = closed_port()
    sandbox = faulty_sandbox(extra={"receiver_url": f"http://127.0.0.1:{port}/telnyx"})
    call = sandbox.create_call()
    sandbox.inject(START_ROUTE, "reset_after")

    with pytest.raises(UncertainStartError) as raised:
        RecordingHook(adoption_wait=0.3, retry_policy=quick_policy()).start_call_recording(
            call, recording_status_callback=f"http://127.0.0.1:{port}/telnyx/recording-status"
        )

    [started] = sandbox.started_on(call)
    message = str(raised.value)
    assert "may have gone through" in message
    assert started["sid"] in message  # what is on the call now, so the user can check it
    assert "did not answer" in message


def test_a_retry_that_cannot_ask_the_receiver_names_what_is_on_the_call(faulty_sandbox):
    port = closed_port()
    sandbox = faulty_sandbox(extra={"receiver_url": f"http://127.0.0.1:{port}/telnyx"})
    call = sandbox.create_call()
    other = RecordingHook().start_call_recording(call)  # the call has a recording this task cannot place
    store = DictStore()
    store.values[STATE_KEY] = {"call_sid": call, "state": "reply_lost", "tokens": ["t" * 43]}

    with pytest.raises(UncertainStartError) as raised:
        StartCallRecordingOperator(
            task_id="record",
            call_sid=call,
            recording_status_callback=f"http://127.0.0.1:{port}/telnyx/recording-status",
            adoption_wait=0.3,
        ).execute(context(store, try_number=2))

    assert "did not answer" in str(raised.value)
    assert other["sid"] in str(raised.value)
    assert len(sandbox.started_on(call)) == 1


# -- task retries remember every attempt's token ------------------------------------------------------


def test_a_retry_after_a_refused_resend_still_watches_the_earlier_lost_attempts_token(
    faulty_sandbox, receiver
):
    # Try 1: the first POST is carried out but its reply lost (R1), its callback comes late; the start is
    # sent again with a new token and refused (429) until the try's retries run out: the state store's last
    # word is "refused". Nothing is running but R1, and R1 is this task's: the retry must find it by the
    # first token, not start a second recording.
    sandbox = faulty_sandbox(retry_after=0)
    call = sandbox.create_call()
    sandbox.inject(START_ROUTE, "reset_after")
    sandbox.inject(START_ROUTE, "429", count=3)
    sandbox.hold_callbacks()
    store = DictStore()
    arguments = {
        "task_id": "record",
        "call_sid": call,
        "recording_status_callback": receiver.callback_url,
        "adoption_wait": 0.5,
        "max_retries": 3,
        "retry_max_wait": 0.05,
    }

    with pytest.raises(TelnyxApiError, match="429"):
        StartCallRecordingOperator(**arguments).execute(context(store))
    assert store.values[STATE_KEY]["state"] == "refused"
    [first] = [item["sid"] for item in sandbox.started_on(call)]
    sandbox.release_callbacks()
    wait_for(lambda: receiver.store.list_prefix("start_tokens", tokens_sent(sandbox, call)[0]))

    resumed = StartCallRecordingOperator(**arguments).execute(context(store, try_number=2))

    assert resumed["sid"] == first
    assert [item["sid"] for item in sandbox.started_on(call)] == [first]  # no second recording
    assert store.values[STATE_KEY]["recording_sid"] == first


# -- superseded recordings are stopped, never left running --------------------------------------------


def _start_superseding(sandbox, receiver):
    """An exact start whose first POST is carried out but unanswered and whose callback is held: it is sent
    again and gets its reply. Returns (the first attempt's recording, the start's own)."""
    call = sandbox.create_call()
    sandbox.inject(START_ROUTE, "reset_after")
    sandbox.hold_callbacks()
    hook = RecordingHook(adoption_wait=0.5, retry_policy=quick_policy())
    recording = hook.start_call_recording(call, recording_status_callback=receiver.callback_url)
    first, second = (item["sid"] for item in sandbox.started_on(call))
    assert recording["sid"] == second
    return call, first, second


def test_a_superseded_recording_whose_callback_comes_after_the_start_finished_is_stopped(
    faulty_sandbox, receiver, caplog
):
    # Open point (b): the task is over when the first attempt's callback arrives.
    sandbox = faulty_sandbox()
    caplog.set_level(logging.INFO, logger="telnyx_provider")
    call, first, second = _start_superseding(sandbox, receiver)
    assert [item["sid"] for item in sandbox.started_on(call)] == [first, second]
    assert status(first) == "in-progress"  # the start ended before anything could prove it its own

    sandbox.release_callbacks()

    wait_for(lambda: status(first) in ("stopped", "completed"))
    assert status(second) == "in-progress"  # the start's own keeps recording
    assert any(
        f"Stopped recording {first}" in r.getMessage() and "superseded" in r.getMessage()
        for r in caplog.records
        if r.name.startswith("telnyx_provider.plugins")
    )


def test_a_superseded_recording_whose_stop_fails_is_stopped_on_a_later_look(
    faulty_sandbox, receiver, when, monkeypatch
):
    # The first attempt's callback arrives while the start settles, and the first stop of it fails (503s
    # for longer than one stop's retries): the start tries again rather than count it stopped. The
    # receiver's connection here has another API key, so the receiver cannot take the settlement over: the
    # start's own looks are all there is.
    sandbox = faulty_sandbox()
    other = {**json.loads(sandbox.airflow_conn_json()), "password": "KEYanother_key_of_the_account"}
    monkeypatch.setenv("AIRFLOW_CONN_TELNYX_RECEIVER", json.dumps(other))
    call = sandbox.create_call()
    sandbox.inject(START_ROUTE, "reset_after")
    sandbox.hold_callbacks()
    when(
        lambda: len(sandbox.started_on(call)) == 2,
        lambda: (sandbox.inject(UPDATE_ROUTE, "503", count=3), sandbox.release_callbacks()),
    )
    hook = RecordingHook(adoption_wait=3.0, retry_policy=quick_policy(max_retries=2))

    recording = hook.start_call_recording(
        call, recording_status_callback=receiver.callback_url + "?conn_id=telnyx_receiver"
    )

    first, second = (item["sid"] for item in sandbox.started_on(call))
    assert recording["sid"] == second
    assert sandbox.stats()["faults_injected"]["503"] == 3  # the first stop failed
    assert status(first) in ("stopped", "completed")


def test_the_receiver_stops_nothing_for_a_start_that_never_settled(faulty_sandbox, receiver):
    # A single attempt whose reply came: nothing to supersede, and a late callback of it changes nothing.
    sandbox = faulty_sandbox()
    call = sandbox.create_call()
    sandbox.hold_callbacks()
    recording = RecordingHook(adoption_wait=0.5, retry_policy=quick_policy()).start_call_recording(
        call, recording_status_callback=receiver.callback_url
    )
    sandbox.release_callbacks()
    token = tokens_sent(sandbox, call)[0]
    wait_for(lambda: receiver.store.list_prefix("start_tokens", token))
    assert status(recording["sid"]) == "in-progress"


def test_a_settlement_needs_the_connections_key_and_only_ever_names_its_own_call(faulty_sandbox, receiver):
    import hashlib
    import hmac

    import requests

    from telnyx_provider.exact_start import new_token

    sandbox = faulty_sandbox()
    url = receiver.callback_url.replace("/recording-status", "/starts/settled")
    body = json.dumps({"call_sid": "v3:x", "kept": "r", "tokens": [new_token()]}).encode()
    forged = hmac.new(b"not the key", body, hashlib.sha256).hexdigest()
    good = hmac.new(sandbox.api_key.encode(), body, hashlib.sha256).hexdigest()

    refused = requests.post(url, data=body, headers={"telnyx-provider-mac": forged}, timeout=5)
    unsigned = requests.post(url, data=body, timeout=5)
    accepted = requests.post(url, data=body, headers={"telnyx-provider-mac": good}, timeout=5)

    assert (refused.status_code, unsigned.status_code) == (401, 401)
    assert accepted.status_code == 200, accepted.text
    assert len(receiver.store.list_prefix("start_settled", "")) == 1
    assert sandbox.api_key not in accepted.text


# -- a worker killed between any two writes of the start's journal -------------------------------------

KILL_POINTS = [
    # (what the dying worker was about to store, the start's mode, a fault on the first POST)
    pytest.param('value.get("state") == "sending"', "default", None, id="prepared|sending-default"),
    pytest.param('value.get("state") == "sending"', "exact", None, id="prepared|sending-exact"),
    pytest.param(
        'value.get("state") == "reply_lost"', "default", "reset_after", id="sending|reply_lost-default"
    ),
    pytest.param('value.get("state") == "reply_lost"', "exact", "reset_after", id="sending|reply_lost-exact"),
    pytest.param('value.get("state") == "refused"', "default", "429", id="sending|refused-default"),
    pytest.param('value.get("state") == "refused"', "exact", "429", id="sending|refused-exact"),
    pytest.param('value.get("stop_requested")', "default", None, id="started|stop_requested"),
]


@pytest.mark.parametrize(("dies_storing", "mode", "fault"), KILL_POINTS)
def test_a_worker_killed_between_two_journal_writes_leaves_its_retry_exactly_one_recording(
    faulty_sandbox, receiver, tmp_path, dies_storing, mode, fault
):
    """A real process dies (``os._exit``) as it is about to store the next step of its start; the retry
    reads what was stored and the service, and the call ends up with exactly one recording, the task's."""
    from tests.reliability.test_reliability_start_retries import _run_dying_worker

    sandbox = faulty_sandbox(retry_after=0)
    call = sandbox.create_call()
    arguments: dict[str, Any] = {
        "call_sid": call,
        "adoption_wait": 1.0,
        "max_retries": 0,
        "retry_max_wait": 0.05,
    }
    if mode == "exact":
        arguments["recording_status_callback"] = receiver.callback_url
    if "stop_requested" in dies_storing:
        arguments.update(max_retries=3, wait_for_completion=True, poll_interval=0.2, timeout=0.6)
    if fault:
        sandbox.inject(START_ROUTE, fault)
    stored = _run_dying_worker(
        sandbox,
        tmp_path / "store.json",
        dies_storing,
        f"""
        op = StartCallRecordingOperator(task_id="record", **{arguments!r})
        op.execute({{"task_state_store": FileStore()}})
        """,
    )
    store = DictStore()
    store.values[STATE_KEY] = stored
    retry = {**arguments, "max_retries": 3, "wait_for_completion": False}

    recording = StartCallRecordingOperator(task_id="record", **retry).execute(context(store, try_number=2))

    assert [item["sid"] for item in sandbox.started_on(call)] == [recording["sid"]]
    assert status(recording["sid"]) == "in-progress"
    assert store.values[STATE_KEY]["recording_sid"] == recording["sid"]


# -- three starts on one call --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("world", "faults"),
    [
        pytest.param({}, ("reset_after", "reset_before", "503"), id="after+before+503"),
        pytest.param(
            {"list_lag": 2.0, "clock_skew": 30.0}, ("504", "reset_after", "reset_after"), id="lag+skew"
        ),
    ],
)
def test_three_starts_on_one_call_in_exact_mode_each_get_their_own(faulty_sandbox, receiver, world, faults):
    from concurrent.futures import ThreadPoolExecutor

    sandbox = faulty_sandbox(**world)
    call = sandbox.create_call()
    for kind in faults:
        sandbox.inject(START_ROUTE, kind)
    barrier = threading.Barrier(3)
    tracks = ("inbound", "outbound", "both")

    def start(track):
        barrier.wait()
        hook = RecordingHook(adoption_wait=3.0, retry_policy=quick_policy(budget=30.0))
        return hook.start_call_recording(
            call,
            recording_channels="single",
            recording_track=track,
            recording_status_callback=receiver.callback_url,
        )

    with ThreadPoolExecutor(3) as pool:
        got = dict(zip(tracks, pool.map(start, tracks), strict=True))

    truth = {item["sid"]: item["track"] for item in sandbox.started_on(call)}
    assert truth == {got[track]["sid"]: track for track in tracks}  # each its own, none twice, none lost
