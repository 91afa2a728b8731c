"""RecordingHook's whole surface (and the async client's) against Stoplight Prism serving Telnyx's spec.

Prism (``@stoplight/prism-cli``, an npm package) mocks the spec: with ``--errors`` it refuses a request the
spec does not allow (422 for a bad value or format, 415 for a body of another type, 401 without a bearer
key) and answers valid ones with the spec's examples (ISO 8601 dates, a ``next_page_uri`` on every list
page). So every call here proves three things: it ENDS (within :data:`LIMIT` seconds), its request CONFORMS
(Prism accepted it) and its reply PARSES. A list that follows ``next_page_uri`` gets the same page for ever:
it must end with the provider's repeated-page error, not page on (issue 14, point 9).

The test installs Prism into ``build/prism`` when it is missing (``npm install``, pinned version; needs the
npm registry), serves the spec on a free loopback port (its paths under ``/v2``, the spec's server path, so
the connection's base URL is ``http://127.0.0.1:PORT/v2``), waits until it answers, and stops it by its
process group at the end, also on failure.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests

from telnyx_provider.errors import TelnyxApiError
from telnyx_provider.hooks.recording import RecordingHook
from telnyx_provider.retry import RetryPolicy
from tests.spec_conformance import load_spec

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

REPO = Path(__file__).resolve().parents[2]
PRISM_VERSION = "5.16.0"
PRISM_DIR = REPO / "build" / "prism"
PRISM_BIN = PRISM_DIR / "node_modules" / ".bin" / "prism"
#: Seconds any one call may take against Prism (it answers in milliseconds).
LIMIT = 30.0
ACCOUNT_SID = "61bf923e-5e4d-4595-a110-56190ea18a1b"
CALL_SID = "v3:KBnLO0ZK3DhKM5s7bE9VluaSmKsOchKht_fUYvxcp8ysbmzCCtpkmA"
#: The spec says recording and transcription SIDs are UUIDs; Prism refuses others (422).
RECORDING_SID = "6a09cdc3-8948-47f0-aa62-74ac943d6c58"
TRANSCRIPTION_SID = "b08f0fa1-a32c-4218-b3b5-9cf78941ccac"
#: The SID of the spec's example recording (every reply Prism gives).
EXAMPLE_SID = "e9cea0be-7dbd-4b98-98b1-c0089d9d43b0"
NO_RETRY = RetryPolicy(max_retries=0, max_wait=0.01, budget=LIMIT)


def install_prism() -> Path:
    """``build/prism/node_modules/.bin/prism``, installed with npm if missing (one installer at a time)."""
    PRISM_DIR.mkdir(parents=True, exist_ok=True)
    with open(PRISM_DIR.parent / "prism.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel test workers: one installs, the others wait
        if PRISM_BIN.exists():
            return PRISM_BIN
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("npm is needed to install Stoplight Prism (apt-get install npm)")
        done = subprocess.run(
            [
                npm,
                "install",
                "--prefix",
                str(PRISM_DIR),
                "--no-audit",
                "--no-fund",
                f"@stoplight/prism-cli@{PRISM_VERSION}",
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0 or not PRISM_BIN.exists():
            pytest.fail(
                f"npm install @stoplight/prism-cli@{PRISM_VERSION} failed:\n{done.stdout}\n{done.stderr}"
            )
    return PRISM_BIN


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Prism:
    """One ``prism mock`` process serving a spec on 127.0.0.1, in its own process group."""

    def __init__(self, binary: Path, spec: Path, log: Path) -> None:
        self.port = free_port()
        self.log = log
        with open(log, "w") as out:
            self.process = subprocess.Popen(
                [str(binary), "mock", "-h", "127.0.0.1", "-p", str(self.port), "--errors", str(spec)],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped whole, by its id
            )
        self.base_url = f"http://127.0.0.1:{self.port}/v2"

    def wait_ready(self, limit: float = 120.0) -> None:
        """Poll until Prism answers an authenticated list request (any HTTP reply proves it serves)."""
        deadline = time.monotonic() + limit
        url = f"{self.base_url}/texml/Accounts/{ACCOUNT_SID}/Recordings.json"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Prism exited with {self.process.returncode}:\n{self.log.read_text()}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(url, headers={"Authorization": "Bearer k"}, timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"Prism did not answer within {limit:.0f} s:\n{self.log.read_text()}")

    def received(self, method: str) -> int:
        """How many ``method`` requests Prism logged so far."""
        return self.log.read_text().count(f"[HTTP SERVER] {method.lower()} ")

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


@pytest.fixture(scope="module")
def prism(tmp_path_factory) -> Iterator[Prism]:
    binary = install_prism()
    folder = tmp_path_factory.mktemp("prism")
    spec = load_spec()
    # The spec's server is https://api.telnyx.com/v2; Prism serves paths at its root: give them the /v2.
    spec["paths"] = {f"/v2{path}": item for path, item in spec["paths"].items()}
    spec_file = folder / "texml-recordings-openapi.json"
    spec_file.write_text(json.dumps(spec))
    server = Prism(binary, spec_file, folder / "prism.log")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture
def hook(prism, monkeypatch) -> Iterator[RecordingHook]:
    conn = {
        "conn_type": "telnyx",
        "host": prism.base_url,
        "login": ACCOUNT_SID,
        "password": "KEYprism_contract",
    }
    monkeypatch.setenv("AIRFLOW_CONN_TELNYX_DEFAULT", json.dumps(conn))
    hook = RecordingHook(retry_policy=NO_RETRY)
    yield hook
    hook.close()


def ends(call: Callable[[], Any], limit: float = LIMIT) -> Any:
    """Run ``call`` and return its result (or raise its error); fail if it has not ended after ``limit`` s."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as error:  # handed to the test below
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit)
    if thread.is_alive():
        pytest.fail(f"the call did not end within {limit:.0f} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def assert_example_recording(recording: dict[str, Any]) -> None:
    """The spec's example, parsed: its SID, ISO 8601 dates in UTC, the duration as a number."""
    assert recording["sid"] == EXAMPLE_SID
    assert recording["date_created"] == "2023-08-11T19:12:11+00:00"
    assert recording["duration"] == 12


def test_start_with_every_parameter(hook):
    recording = ends(
        lambda: hook.start_call_recording(
            CALL_SID,
            play_beep=False,
            recording_status_callback="https://example.com/telnyx/callbacks",
            recording_status_callback_event=["in-progress", "completed", "absent"],
            recording_status_callback_method="GET",
            recording_channels="single",
            recording_track="outbound",
            send_recording_url=False,
            snapshot=[],
        )
    )
    assert_example_recording(recording)
    assert recording["track"] == "inbound"  # the example's, whatever was asked


def test_start_with_defaults_and_a_given_snapshot(hook):
    assert_example_recording(ends(lambda: hook.start_call_recording(CALL_SID, snapshot=[])))


def test_start_whose_snapshot_repeats_a_page_ends_before_the_start_is_sent(prism, hook):
    # Every page of Prism's list is the spec's example, with a next_page_uri: the snapshot paged for ever.
    posts, gets = prism.received("POST"), prism.received("GET")
    with pytest.raises(TelnyxApiError, match="repeats the page before it") as caught:
        ends(lambda: hook.start_call_recording(CALL_SID))
    assert "Calls/v3%3A" in caught.value.path
    assert "page number 0 again" in str(caught.value)
    assert (prism.received("POST") - posts, prism.received("GET") - gets) == (0, 2)


def test_fetch(hook):
    recording = ends(lambda: hook.get_recording(RECORDING_SID))
    assert_example_recording(recording)
    assert recording["status"] == "in-progress"


@pytest.mark.parametrize(
    "listing",
    [
        lambda hook: hook.list_call_recordings(CALL_SID),
        lambda hook: hook.call_recording_sids(CALL_SID),
        lambda hook: list(hook.iter_recordings(page_size=20, date_created_after="2024-01-01")),
        lambda hook: hook.list_transcriptions(page_size=20),
    ],
    ids=["call recordings", "snapshot", "account recordings", "transcriptions"],
)
def test_lists_that_never_end_end_with_the_repeated_page_error(hook, listing):
    with pytest.raises(TelnyxApiError, match="repeats the page before it"):
        ends(lambda: listing(hook))


def test_the_first_page_streams_before_the_repeat(hook):
    recordings = hook.iter_recordings(page_size=20)
    assert_example_recording(ends(lambda: next(recordings)))
    with pytest.raises(TelnyxApiError, match="repeats the page before it"):
        ends(lambda: next(recordings))


@pytest.mark.parametrize("status", ["paused", "in-progress", "stopped"])
def test_update(hook, status):
    assert_example_recording(ends(lambda: hook.update_call_recording(CALL_SID, RECORDING_SID, status)))


def test_stop_and_delete(hook):
    assert ends(lambda: hook.stop_call_recording(CALL_SID, RECORDING_SID))["sid"] == EXAMPLE_SID
    assert ends(lambda: hook.delete_recording(RECORDING_SID)) is None


def test_transcriptions_fetch_and_delete(hook):
    transcription = ends(lambda: hook.get_transcription(TRANSCRIPTION_SID))
    assert transcription["recording_sid"] == EXAMPLE_SID
    assert transcription["transcription_text"] == "Good morning, how may I help you?"
    assert transcription["duration"] == 12
    assert ends(lambda: hook.delete_transcription(TRANSCRIPTION_SID)) is None


def test_connection_test(hook):
    ok, message = ends(hook.test_connection)
    assert ok, message


async def test_the_async_client(prism):
    import asyncio

    from telnyx_provider.connection import TelnyxConnectionConfig
    from telnyx_provider.hooks.recording_async import AsyncRecordingClient

    config = TelnyxConnectionConfig(
        conn_id="prism", base_url=prism.base_url, api_key="KEYprism_contract", account_sid=ACCOUNT_SID
    )
    client = AsyncRecordingClient(config, retry_policy=NO_RETRY)
    try:
        fetched = await asyncio.wait_for(client.get_recording(RECORDING_SID), LIMIT)
        assert_example_recording(fetched)
        stopped = await asyncio.wait_for(client.stop_call_recording(CALL_SID, RECORDING_SID), LIMIT)
        assert stopped["sid"] == EXAMPLE_SID
        since = datetime(2024, 1, 1, tzinfo=timezone.utc)
        with pytest.raises(TelnyxApiError, match="repeats the page before it"):
            await asyncio.wait_for(client.list_recordings_created_since(since, page_size=20), LIMIT)
    finally:
        await client.aclose()


def test_prism_refuses_what_the_spec_does_not_allow(prism):
    """The check has teeth: a request outside the spec is refused, so every accepted call above conformed."""
    account = f"{prism.base_url}/texml/Accounts/{ACCOUNT_SID}"
    headers = {"Authorization": "Bearer k"}
    bad_value = requests.post(
        f"{account}/Calls/{CALL_SID}/Recordings.json",
        data={"RecordingTrack": "sideways"},
        headers=headers,
        timeout=5,
    )
    as_json = requests.post(
        f"{account}/Calls/{CALL_SID}/Recordings.json", json={}, headers=headers, timeout=5
    )
    not_a_uuid = requests.get(f"{account}/Recordings/not-a-uuid.json", headers=headers, timeout=5)
    no_key = requests.get(f"{account}/Recordings.json", timeout=5)
    assert (bad_value.status_code, as_json.status_code, not_a_uuid.status_code, no_key.status_code) == (
        422,
        415,
        422,
        401,
    )
