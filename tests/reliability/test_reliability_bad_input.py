"""Bad input is refused before any request, naming the argument and what is allowed; bad replies never
turn into a ``KeyError``.

Each case goes end to end through the public surface (hook, operator, sensor, connection) with the sync
transport replaced by one that records requests (requests-mock) and every socket connection recorded and
refused (whatever library would open it), and asserts that nothing was sent.
"""

from __future__ import annotations

import json
import re
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
import requests_mock as requests_mock_module

from telnyx_provider._compat import AirflowException
from telnyx_provider.connection import TelnyxConnectionConfig
from telnyx_provider.errors import TelnyxApiError, TelnyxValidationError
from telnyx_provider.hooks.recording import RecordingHook
from telnyx_provider.hooks.recording_async import AsyncRecordingClient
from telnyx_provider.operators.recording import StartCallRecordingOperator
from telnyx_provider.retry import RetryPolicy
from telnyx_provider.sensors.recording import RecordingCompletedSensor
from tests.conftest import ACCOUNT_SID, MOCK_BASE_URL, SECRET_KEY

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

CALL = "v3:KBnLO0ZK3DhKM5s7bE9VluaSmKsOchKht_fUYvxcp8ysbmzCCtpkmA"
REC = "b08f0fa1-a32c-4218-b3b5-9cf78941ccac"
RECORDING = {"sid": REC, "call_sid": CALL, "status": "in-progress", "account_sid": ACCOUNT_SID}
FAST = RetryPolicy(max_retries=2, max_wait=0.01, budget=5, initial_wait=0.001)


@dataclass
class Transports:
    """Every request that reached requests' transport, and every socket connection attempted."""

    sync: requests_mock_module.Mocker
    connections: list[object]

    def count(self) -> int:
        return self.sync.call_count + len(self.connections)


@pytest.fixture
def transports(telnyx_conn, monkeypatch) -> Iterator[Transports]:
    """Record (and answer) every request of ``requests``; record and refuse every socket connection."""
    connections: list[object] = []

    def refuse(sock: socket.socket, address: object) -> None:
        connections.append(address)
        raise ConnectionRefusedError(f"test: no connection allowed to {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    with requests_mock_module.Mocker() as sync:
        sync.register_uri(requests_mock_module.ANY, re.compile(".*"), json=RECORDING)
        yield Transports(sync, connections)


def set_connection(monkeypatch: pytest.MonkeyPatch, **fields: Any) -> None:
    conn = {"conn_type": "telnyx", "host": MOCK_BASE_URL, "login": ACCOUNT_SID, "password": SECRET_KEY}
    conn.update(fields)
    monkeypatch.setenv(
        "AIRFLOW_CONN_TELNYX_DEFAULT", json.dumps({k: v for k, v in conn.items() if v is not None})
    )


def hook() -> RecordingHook:
    return RecordingHook(retry_policy=FAST)


def start(**kwargs: Any) -> Callable[[pytest.MonkeyPatch], object]:
    return lambda mp: hook().start_call_recording(kwargs.pop("call_sid", CALL), **kwargs)


def operator(**kwargs: Any) -> Callable[[pytest.MonkeyPatch], object]:
    return lambda mp: start_operator(**kwargs).execute(context={})


def sensor(**kwargs: Any) -> Callable[[pytest.MonkeyPatch], object]:
    return lambda mp: wait_sensor(**kwargs).poke(context={})


def rendered(make: Callable[[], Any], **values: Any) -> Callable[[pytest.MonkeyPatch], object]:
    """Build a task with templates, give it the values its templates rendered to, then run it."""

    def run(mp: pytest.MonkeyPatch) -> object:
        task = make()
        for name, value in values.items():
            setattr(task, name, value)
        return (
            task.poke(context={}) if isinstance(task, RecordingCompletedSensor) else task.execute(context={})
        )

    return run


def connection(**fields: Any) -> Callable[[pytest.MonkeyPatch], object]:
    """Point ``telnyx_default`` at a connection with these fields, then use it."""

    def run(mp: pytest.MonkeyPatch) -> object:
        set_connection(mp, **fields)
        return hook().get_recording(REC)

    return run


def extra(**values: Any) -> Callable[[pytest.MonkeyPatch], object]:
    return connection(extra=json.dumps(values))


def start_operator(**kwargs: Any) -> StartCallRecordingOperator:
    kwargs.setdefault("call_sid", CALL)
    return StartCallRecordingOperator(task_id="start", **kwargs)


def wait_sensor(**kwargs: Any) -> RecordingCompletedSensor:
    return RecordingCompletedSensor(task_id="wait", deferrable=False, **kwargs)


TEMPLATE = "{{ params.value }}"
CASE = "case-sensitive"
URI = f"/v2/texml/Accounts/{ACCOUNT_SID}/Recordings/{REC}.json"

#: (id, action, words the error must contain: the argument, then what is allowed)
CASES = [
    # blank identifiers
    ("blank call_sid", start(call_sid=""), ["call_sid", "non-empty"]),
    ("spaces call_sid", start(call_sid="   "), ["call_sid", "non-empty"]),
    ("call_sid with a slash", start(call_sid="v3:a/b"), ["call_sid", "'/'"]),
    ("blank account_sid", start(account_sid=""), ["account_sid", "non-empty"]),
    ("blank recording_sid", lambda mp: hook().get_recording(" "), ["recording_sid", "non-empty"]),
    ("blank account_sid on get", lambda mp: hook().get_recording(REC, account_sid="\t"), ["account_sid"]),
    # every enum, unknown or in the wrong case
    ("channels wrong case", start(recording_channels="Dual"), ["recording_channels", "'dual'", CASE]),
    ("channels unknown", start(recording_channels="stereo"), ["recording_channels", "'single'", "'dual'"]),
    ("track wrong case", start(recording_track="BOTH"), ["recording_track", "'both'", CASE]),
    ("track unknown", start(recording_track="caller"), ["recording_track", "'inbound'", "'outbound'"]),
    (
        "method wrong case",
        start(recording_status_callback_method="post"),
        ["callback_method", "'POST'", CASE],
    ),
    ("method unknown", start(recording_status_callback_method="PUT"), ["callback_method", "'GET'"]),
    (
        "event wrong case",
        start(recording_status_callback_event="Completed"),
        ["callback_event", "'completed'"],
    ),
    (
        "event unknown",
        start(recording_status_callback_event=["completed", "x"]),
        ["callback_event", "'absent'"],
    ),
    ("events empty", start(recording_status_callback_event=[]), ["callback_event", "'in-progress'"]),
    ("stop blank recording_sid", lambda mp: hook().stop_call_recording(CALL, " "), ["recording_sid"]),
    (
        "update status Stopped",
        lambda mp: hook().update_call_recording(CALL, REC, "Stopped"),
        ["status", CASE],
    ),
    (
        "update status unknown",
        lambda mp: hook().update_call_recording(CALL, REC, "pause"),
        ["status", "'paused'"],
    ),
    ("play_beep not a boolean", start(play_beep="maybe"), ["play_beep", "True or False"]),
    # callback URLs
    (
        "callback not http",
        start(recording_status_callback="ftp://example.com/cb"),
        ["status_callback", "http://"],
    ),
    (
        "callback no scheme",
        start(recording_status_callback="example.com/cb"),
        ["status_callback", "https://"],
    ),
    ("callback no host", start(recording_status_callback="https:///cb"), ["status_callback", "host"]),
    (
        "callback space in host",
        start(recording_status_callback="https://exa mple.com/"),
        ["callback", "spaces"],
    ),
    (
        "callback bad port",
        start(recording_status_callback="https://example.com:99999/"),
        ["callback", "port"],
    ),
    (
        "callback port not a number",
        start(recording_status_callback="https://example.com:8a/"),
        ["callback", "port"],
    ),
    # paging and retry settings
    ("page_size 0", lambda mp: next(hook().iter_recordings(page_size=0)), ["page_size", ">= 1"]),
    ("max_retries negative", lambda mp: RecordingHook(max_retries=-1), ["max_retries", ">= 0"]),
    ("retry_budget 0", lambda mp: RecordingHook(retry_budget=0), ["retry_budget", "greater than 0"]),
    # the connection
    ("no API key", connection(password=None), ["password", "API key"]),
    ("blank API key", connection(password="  "), ["password", "API key"]),
    ("API key with a line break", connection(password="ab\ncd"), ["password", "printable"]),
    ("base URL not http", connection(host="ftp://api.telnyx.com/v2"), ["host", "https://"]),
    ("base URL bad port", connection(host="https://api.telnyx.com:http/v2"), ["host", "https://"]),
    (
        "base URL with credentials",
        connection(host="https://me:pw@api.telnyx.com/v2"),
        ["host", "credentials"],
    ),
    ("read timeout 0", extra(timeout=0), ["timeout", "greater than 0"]),
    ("connect timeout negative", extra(connect_timeout=-1), ["connect_timeout", "greater than 0"]),
    ("missing CA bundle", extra(ca_bundle="/nonexistent/ca.pem"), ["ca_bundle", "no such file"]),
    ("no account anywhere", connection(login=None), ["account_sid", "login"]),
    # the operator
    ("operator blank call_sid", operator(call_sid=" "), ["call_sid", "non-empty"]),
    ("operator channels wrong case", operator(recording_channels="Single"), ["recording_channels", CASE]),
    ("operator poll_interval 0", operator(poll_interval=0), ["poll_interval", "greater than 0"]),
    ("operator poll_interval negative", operator(poll_interval=-10), ["poll_interval", "greater than 0"]),
    ("operator timeout 0", operator(timeout=0, wait_for_completion=True), ["timeout", "greater than 0"]),
    (
        "operator timeout negative",
        operator(timeout=-1, wait_for_completion=True),
        ["timeout", "greater than 0"],
    ),
    (
        "operator rendered call_sid blank",
        rendered(lambda: start_operator(call_sid=TEMPLATE), call_sid=""),
        ["call_sid", "non-empty"],
    ),
    (
        "operator rendered track wrong case",
        rendered(lambda: start_operator(recording_track=TEMPLATE), recording_track="Inbound"),
        ["recording_track", "'inbound'", CASE],
    ),
    (
        "operator rendered callback no host",
        rendered(
            lambda: start_operator(recording_status_callback=TEMPLATE), recording_status_callback="http://"
        ),
        ["status_callback", "host"],
    ),
    # the sensor
    (
        "sensor both sid and uri",
        sensor(recording_sid=REC, recording_uri=URI),
        ["recording_uri", "exactly one"],
    ),
    ("sensor neither sid nor uri", sensor(), ["recording_sid/recording_uri", "exactly one"]),
    (
        "sensor uri not a recording",
        sensor(recording_uri="https://x.com/v2/calls/a"),
        ["recording_uri", "/Recordings/"],
    ),
    ("sensor blank sid", sensor(recording_sid=""), ["recording_sid", "non-empty"]),
    ("sensor blank account", sensor(recording_sid=REC, account_sid=" "), ["account_sid", "non-empty"]),
    (
        "sensor poke_interval 0",
        sensor(recording_sid=REC, poke_interval=0),
        ["poke_interval", "greater than 0"],
    ),
    ("sensor timeout 0", sensor(recording_sid=REC, timeout=0), ["timeout", "greater than 0"]),
    (
        "sensor rendered uri not a recording",
        rendered(lambda: wait_sensor(recording_uri=TEMPLATE), recording_uri="https://example.com/x.json"),
        ["recording_uri", "/Recordings/"],
    ),
]


@pytest.mark.parametrize(("action", "words"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input_is_refused_before_any_request(transports, monkeypatch, action, words):
    with pytest.raises(TelnyxValidationError) as raised:
        action(monkeypatch)
    message = str(raised.value)
    for word in words:
        assert word in message, f"{word!r} missing from: {message}"
    assert isinstance(raised.value, ValueError)
    assert isinstance(raised.value, AirflowException)  # fails the task with the message
    assert transports.count() == 0, "a request was sent before the input was refused"
    assert SECRET_KEY not in message


def test_there_are_at_least_twenty_distinct_bad_inputs():
    assert len({case[0] for case in CASES}) == len(CASES) >= 20


# -- malformed replies -------------------------------------------------------------------------------

GET_URL = f"{MOCK_BASE_URL}/texml/Accounts/{ACCOUNT_SID}/Recordings/{REC}.json"
HTML_PAGE = b"<html><head><title>502 Bad Gateway</title></head><body><center>nginx</center></body></html>"

#: (id, status, body, headers, what the message must quote)
MALFORMED = [
    ("html 200 from a proxy", 200, HTML_PAGE, {"Content-Type": "text/html"}, "<html><head><title>502"),
    ("html 502 from a proxy", 502, HTML_PAGE, {"Content-Type": "text/html"}, "<html><head><title>502"),
    ("plain text 200", 200, b"OK", {}, "'OK'"),
    ("json without sid", 200, b'{"status": "completed", "duration": "3"}', {}, '"status": "completed"'),
    ("json with Infinity", 200, b'{"sid": "r", "duration": Infinity}', {}, "Infinity"),
    ("json with NaN", 200, b'{"sid": "r", "price": NaN}', {}, "NaN"),
    ("truncated json", 200, b'{"sid": "r", "stat', {}, '{"sid": "r", "stat'),
    ("json list", 200, b"[1, 2, 3]", {}, "[1, 2, 3]"),
    ("json null", 200, b"null", {}, "'null'"),
    ("json string", 200, b'"recording"', {}, '"recording"'),
    ("sid not a string", 200, b'{"sid": 12}', {}, '{"sid": 12}'),
    ("not utf-8", 200, b"\xff\xfe\x00garbage", {}, "garbage"),
    ("deeply nested", 200, b"[" * 100_000, {}, "[[[["),
    ("empty 200", 200, b"", {}, "''"),
    ("error body not json", 500, b"Internal Server Error", {}, "Internal Server Error"),
    ("error body json without errors", 422, b'{"message": "bad"}', {}, '{"message": "bad"}'),
    ("redirect", 302, b"", {"Location": "https://elsewhere.example/v2"}, "elsewhere.example"),
]


@pytest.mark.parametrize(
    ("status", "body", "headers", "quoted"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_malformed_replies_show_status_and_body_not_a_key_error(
    telnyx_conn, requests_mock, status, body, headers, quoted
):
    requests_mock.get(GET_URL, status_code=status, content=body, headers=headers)
    with pytest.raises(TelnyxApiError) as raised:
        hook().get_recording(REC)
    message = str(raised.value)
    assert f"HTTP {status}" in message
    assert quoted in message
    assert len(message) < 600  # the start of the body, not all of it


@pytest.mark.parametrize(
    ("status", "body", "quoted"),
    [
        (200, HTML_PAGE, "<html>"),
        (200, b'{"sid": "r", "duration": -Infinity}', "Infinity"),
        (200, b'{"status": "completed"}', '"status": "completed"'),
        (502, b"<h1>x</h1>", "<h1>"),
    ],
)
async def test_async_client_reads_malformed_replies_the_same_way(reply_server, status, body, quoted):
    reply_server.reply(status, body)
    config = TelnyxConnectionConfig.from_fields(
        "telnyx_default", host=reply_server.url, login=ACCOUNT_SID, password=SECRET_KEY, extra=None
    )
    client = AsyncRecordingClient(config, retry_policy=FAST)
    try:
        with pytest.raises(TelnyxApiError) as raised:
            await client.get_recording(REC)
    finally:
        await client.aclose()
    assert f"HTTP {status}" in str(raised.value)
    assert quoted in str(raised.value)


def test_malformed_start_reply_fails_the_operator_with_the_body(telnyx_conn, requests_mock):
    requests_mock.post(re.compile(".*/Recordings.json"), text="<html>Service Unavailable</html>")
    requests_mock.get(re.compile(".*/Recordings.json"), json={"recordings": []})
    with pytest.raises(TelnyxApiError) as raised:
        StartCallRecordingOperator(task_id="start", call_sid=CALL).execute(context={})
    assert "HTTP 200" in str(raised.value)
    assert "<html>Service Unavailable" in str(raised.value)


def test_list_reply_without_recordings_is_an_api_error(telnyx_conn, requests_mock):
    requests_mock.get(re.compile(".*/Calls/.*/Recordings.json"), json={"calls": []})
    with pytest.raises(TelnyxApiError, match="not a list of recordings"):
        hook().list_call_recordings(CALL)
