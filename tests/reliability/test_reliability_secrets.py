"""The API key never leaks, and TLS verification stays on.

Each test uses a fresh key that Airflow's secret masker has never seen, with ``mask_secret`` replaced by a
recorder: a leak into a log line would therefore show up in what is scanned instead of being hidden by the
masker. Scanned: stdlib log records (caplog), everything written to stdout/stderr (Airflow 3 task loggers
are structlog loggers writing there), XCom values, exceptions (message, repr, pickle, traceback with its
chain), trigger serialisation and events, and the repr of every object holding the connection.
"""

from __future__ import annotations

import datetime
import json
import logging
import pickle
import re
import socket
import ssl
import threading
import time
import traceback
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import pytest
import requests

from telnyx_provider.connection import TelnyxConnectionConfig, config_from_connection
from telnyx_provider.errors import TelnyxApiError, TelnyxValidationError
from telnyx_provider.hooks.recording import RecordingHook
from telnyx_provider.hooks.recording_async import AsyncRecordingClient
from telnyx_provider.operators.recording import StartCallRecordingOperator
from telnyx_provider.retry import RetryPolicy, is_retryable
from telnyx_provider.sensors.recording import RecordingCompletedSensor
from telnyx_provider.triggers.recording import RecordingCompletedTrigger
from tests.conftest import ACCOUNT_SID, MOCK_BASE_URL

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

CALL = "v3:KBnLO0ZK3DhKM5s7bE9VluaSmKsOchKht_fUYvxcp8ysbmzCCtpkmA"
REC = "b08f0fa1-a32c-4218-b3b5-9cf78941ccac"
ACCOUNT = f"{MOCK_BASE_URL}/texml/Accounts/{ACCOUNT_SID}"
GET_URL = f"{ACCOUNT}/Recordings/{REC}.json"
ANY_URL = re.compile(re.escape(MOCK_BASE_URL) + ".*")
COMPLETED = {
    "sid": REC,
    "call_sid": CALL,
    "account_sid": ACCOUNT_SID,
    "status": "completed",
    "duration": "3",
    "source": "StartCallRecordingAPI",
    "uri": f"/v2/texml/Accounts/{ACCOUNT_SID}/Recordings/{REC}.json",
}
FAST = {"max_retries": 2, "max_wait": 0.001, "budget": 0.5, "initial_wait": 0.001}


class Leak:
    """A fresh API key, a connection using it, and the scanner that proves it never escaped."""

    def __init__(
        self, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, capsys: Any
    ) -> None:
        self.key = f"KEYleak_{uuid.uuid4().hex}"
        self.masked: list[str] = []
        self._monkeypatch, self._caplog, self._capsys = monkeypatch, caplog, capsys
        monkeypatch.setattr("telnyx_provider.connection.mask_secret", self.masked.append)
        caplog.set_level(logging.DEBUG)
        self.connect()

    def connect(self, **fields: Any) -> None:
        conn = {
            "conn_type": "telnyx",
            "host": MOCK_BASE_URL,
            "login": ACCOUNT_SID,
            "password": self.key,
            # Operators and sensors build their own hooks: keep their retries quick.
            "extra": json.dumps({"max_retries": 2, "retry_max_wait": 0.001, "retry_budget": 0.3}),
        }
        conn.update(fields)
        self._monkeypatch.setenv("AIRFLOW_CONN_TELNYX_DEFAULT", json.dumps(conn))

    def check_text(self, *texts: object) -> None:
        for text in texts:
            assert self.key not in str(text)

    def check_error(self, error: BaseException) -> None:
        self.check_text(str(error), repr(error), error.args, "".join(traceback.format_exception(error)))
        assert self.key.encode() not in pickle.dumps(error)
        for linked in (error.__cause__, error.__context__):
            if linked is not None:
                self.check_error(linked)

    def check_outputs(self) -> None:
        """Nothing logged (stdlib or structlog) and nothing printed holds the key."""
        captured = self._capsys.readouterr()
        self.check_text(captured.out, captured.err, self._caplog.text)
        for record in self._caplog.records:
            self.check_text(record.getMessage(), record.__dict__)


@pytest.fixture
def leak(monkeypatch, caplog, capsys) -> Leak:
    return Leak(monkeypatch, caplog, capsys)


def hook() -> RecordingHook:
    return RecordingHook(retry_policy=RetryPolicy(**FAST))


def _echoing_error_page(request, context):
    """What a misconfigured proxy might answer: an error page echoing the request headers."""
    context.status_code = 502
    return "<html><pre>" + "\n".join(f"{k}: {v}" for k, v in request.headers.items()) + "</pre></html>"


#: Ways a request can fail: (id, requests-mock response arguments)
SYNC_FAILURES = [
    ("401", {"status_code": 401, "json": {"errors": [{"code": "10009", "title": "Authentication failed"}]}}),
    ("403", {"status_code": 403, "json": {"errors": [{"code": "10010", "title": "Forbidden"}]}}),
    ("404", {"status_code": 404, "json": {"errors": [{"code": "10005", "title": "Not found"}]}}),
    ("422", {"status_code": 422, "json": {"errors": [{"code": "10015", "title": "Invalid"}]}}),
    ("500 retried", {"status_code": 500, "text": "Internal Server Error"}),
    ("429 retried", {"status_code": 429, "headers": {"Retry-After": "0"}, "json": {"errors": [{}]}}),
    ("reset", {"exc": requests.ConnectionError("('Connection aborted.', ConnectionResetError(104))")}),
    ("read timeout", {"exc": requests.ReadTimeout("Read timed out. (read timeout=30)")}),
    ("connect timeout", {"exc": requests.ConnectTimeout("Connection to api.telnyx.com timed out")}),
    ("tls", {"exc": requests.exceptions.SSLError("certificate verify failed")}),
    ("html body", {"status_code": 200, "text": "<html>maintenance</html>"}),
    ("json without sid", {"status_code": 200, "json": {"status": "completed"}}),
    ("echoed headers", {"text": _echoing_error_page}),
]


@pytest.mark.parametrize("response", [f[1] for f in SYNC_FAILURES], ids=[f[0] for f in SYNC_FAILURES])
def test_sync_error_paths_never_show_the_key(leak, requests_mock, response):
    requests_mock.register_uri(
        requests_mock.ANY if hasattr(requests_mock, "ANY") else "GET", ANY_URL, **response
    )
    requests_mock.post(ANY_URL, **response)
    the_hook = hook()
    for action in (
        lambda: the_hook.get_recording(REC),
        lambda: the_hook.start_call_recording(CALL),
        lambda: StartCallRecordingOperator(task_id="start", call_sid=CALL).execute(context={}),
    ):
        with pytest.raises(TelnyxApiError) as raised:
            action()
        leak.check_error(raised.value)
    sensor = RecordingCompletedSensor(task_id="wait", recording_sid=REC, deferrable=False)
    try:
        poked = sensor.poke({})
    except TelnyxApiError as error:
        leak.check_error(error)
    else:  # a retryable failure keeps a wait going (logged, and the logs are checked below)
        assert not poked.is_done
        assert is_retryable(raised.value)
    ok, message = the_hook.test_connection()
    assert not ok
    leak.check_text(
        message, repr(the_hook), vars(the_hook), repr(the_hook.config), repr(the_hook.retry_policy)
    )
    leak.check_outputs()
    assert set(leak.masked) == {leak.key}  # registered with the masker whenever the connection was read
    assert requests_mock.last_request.headers["Authorization"] == f"Bearer {leak.key}"  # it was really used


def test_an_error_page_echoing_the_request_has_the_key_blanked(leak, requests_mock):
    requests_mock.get(GET_URL, text=_echoing_error_page)
    with pytest.raises(TelnyxApiError) as raised:
        hook().get_recording(REC)
    assert "Authorization: Bearer ***" in str(raised.value)
    assert raised.value.status == 502
    leak.check_error(raised.value)


@pytest.mark.parametrize(
    ("fields", "argument"),
    [
        ({"host": "https://user:{key}@api.telnyx.com/v2"}, "host"),
        ({"host": "ftp://{key}@api.telnyx.com/v2"}, "host"),
        ({"host": "https://api.telnyx.com:{key}/v2"}, "host"),
        ({"password": "{key}\n"}, None),  # whitespace around is stripped: fine, and both forms are masked
        ({"password": "{key}\u00e9"}, "password"),
        ({"extra": '{"timeout": "{key}"'}, "extra"),
    ],
)
def test_bad_connections_are_refused_without_repeating_the_key(leak, requests_mock, fields, argument):
    requests_mock.get(GET_URL, json=COMPLETED)
    leak.connect(**{name: value.replace("{key}", leak.key) for name, value in fields.items()})
    if argument is None:
        hook().get_recording(REC)
        assert leak.key in leak.masked
        assert leak.key + "\n" in leak.masked
        return
    with pytest.raises(TelnyxValidationError) as raised:
        hook().get_recording(REC)
    assert argument in str(raised.value)
    leak.check_error(raised.value)
    leak.check_outputs()
    assert requests_mock.call_count == 0


def test_success_paths_keep_the_key_out_of_xcom_and_logs(leak, requests_mock):
    requests_mock.post(ANY_URL, json={**COMPLETED, "status": "in-progress", "duration": None})
    requests_mock.get(ANY_URL, json=COMPLETED)
    requests_mock.get(re.compile(".*/Calls/.*/Recordings.json.*"), json={"recordings": []})  # the snapshot
    started = StartCallRecordingOperator(
        task_id="start", call_sid=CALL, wait_for_completion=True, poll_interval=0.01
    )
    xcom = started.execute(context={})
    poked = RecordingCompletedSensor(task_id="wait", recording_sid=REC, deferrable=False).poke({})
    assert poked.is_done
    leak.check_text(json.dumps(xcom), json.dumps(poked.xcom_value), repr(started), repr(started.hook))
    leak.check_outputs()


def test_deferral_and_trigger_serialisation_hold_no_key(leak, requests_mock):
    try:  # Airflow 3.2+
        from airflow.sdk.exceptions import TaskDeferred
    except ImportError:  # Airflow 3.1
        from airflow.exceptions import TaskDeferred

    requests_mock.get(ANY_URL, json={**COMPLETED, "status": "in-progress", "duration": None})
    sensor = RecordingCompletedSensor(task_id="wait", recording_sid=REC, deferrable=True, poke_interval=1)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context={})
    classpath, kwargs = deferred.value.trigger.serialize()
    leak.check_text(classpath, json.dumps(kwargs), repr(deferred.value), repr(deferred.value.trigger))
    assert leak.key.encode() not in pickle.dumps(kwargs)
    leak.check_outputs()


def closed_port_url() -> str:
    """The base URL of a loopback port nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v2"


#: (id, status, body, seconds before the reply); status None: nothing listens (connection refused)
TRIGGER_REPLIES = [
    ("401", 401, {"errors": [{"code": "10009", "title": "Authentication failed"}]}, 0.0),
    ("404", 404, {"errors": [{"code": "10005"}]}, 0.0),
    ("503", 503, "<html>down</html>", 0.0),
    ("not-json", 200, "not json", 0.0),
    ("refused", None, "", 0.0),
    ("timeout", 200, COMPLETED, 1.0),
    ("success", 200, COMPLETED, 0.0),
]


@pytest.mark.parametrize(
    ("status", "body", "delay"), [r[1:] for r in TRIGGER_REPLIES], ids=[r[0] for r in TRIGGER_REPLIES]
)
async def test_trigger_events_and_logs_hold_no_key(leak, reply_server, status, body, delay):
    if status is not None:
        reply_server.reply(status, body)
        reply_server.delay = delay
    leak.connect(
        host=reply_server.url if status is not None else closed_port_url(),
        extra=json.dumps({"max_retries": 1, "retry_max_wait": 0.001, "timeout": 0.3}),
    )
    # A retryable failure (503, no reply) keeps the wait going until its deadline.
    trigger = RecordingCompletedTrigger(REC, poll_interval=0.01, deadline=time.time() + 1.5)
    event = await trigger.run().__anext__()
    retryable = status in (None, 503) or delay
    expected = "timeout" if retryable else "success" if body is COMPLETED else "error"
    assert event.payload["status"] == expected
    if status is not None:
        assert reply_server.seen[-1][2]["Authorization"] == f"Bearer {leak.key}"  # it was really sent
    leak.check_text(json.dumps(event.payload), repr(event), json.dumps(trigger.serialize()[1]))
    leak.check_outputs()


def test_reprs_of_everything_holding_the_connection(leak):
    config = TelnyxConnectionConfig.from_fields(
        "c", host=None, login=ACCOUNT_SID, password=leak.key, extra={"max_retries": 1}
    )
    the_hook = hook()
    _ = the_hook.config, the_hook.get_conn()
    leak.check_text(
        repr(config), str(config), repr(the_hook), vars(the_hook), repr(the_hook.get_conn().__dict__)
    )
    assert leak.key.encode() not in pickle.dumps(RetryPolicy())
    leak.check_outputs()


async def test_async_client_repr_holds_no_key(leak):
    config = TelnyxConnectionConfig.from_fields(
        "c", host=None, login=ACCOUNT_SID, password=leak.key, extra=None
    )
    client = AsyncRecordingClient(config)
    try:
        leak.check_text(repr(client), vars(client), repr(client.config))
    finally:
        await client.aclose()


def test_masking_happens_when_the_connection_is_read(leak):
    class Conn:
        conn_id, host, login, extra = "telnyx_default", None, ACCOUNT_SID, None
        schema, port = None, None
        password = leak.key

    assert leak.masked == []
    config_from_connection(Conn())  # type: ignore[arg-type]
    assert leak.masked == [leak.key]


# -- TLS ----------------------------------------------------------------------------------------------


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate it signs for 127.0.0.1: (ca.pem, server.pem, server.key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "telnyx-provider test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


class HttpsServer:
    """A loopback HTTPS server answering every GET with a completed recording; counts TLS handshakes."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.handshakes = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = json.dumps(COMPLETED).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self):  # type: ignore[no-untyped-def]
                sock, address = super().get_request()
                server.handshakes += 1
                return sock, address

            def handle_error(self, request, client_address):  # type: ignore[no-untyped-def]
                pass  # a client refusing our certificate is the point of some tests

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.httpd.socket = context.wrap_socket(
            self.httpd.socket, server_side=True, do_handshake_on_connect=False
        )
        self.url = f"https://127.0.0.1:{self.httpd.server_address[1]}/v2"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def tls(tmp_path) -> Iterator[tuple[HttpsServer, Path]]:
    ca, cert, key = _certificates(tmp_path)
    server = HttpsServer(cert, key)
    yield server, ca
    server.stop()


def _tls_connection(monkeypatch, url: str, **extra: Any) -> None:
    conn = {"conn_type": "telnyx", "host": url, "login": ACCOUNT_SID, "password": "KEYtls"}
    if extra:
        conn["extra"] = json.dumps(extra)
    monkeypatch.setenv("AIRFLOW_CONN_TELNYX_DEFAULT", json.dumps(conn))


def test_tls_verification_is_on_and_a_failure_is_not_retried(tls, monkeypatch):
    server, _ = tls
    _tls_connection(monkeypatch, server.url, max_retries=5, retry_max_wait=0.01)
    the_hook = RecordingHook()
    assert the_hook.get_conn().verify is True
    with pytest.raises(TelnyxApiError) as raised:
        the_hook.get_recording(REC)
    assert raised.value.failure == "tls"
    assert "CERTIFICATE_VERIFY_FAILED" in str(raised.value)
    assert "ca_bundle" in str(raised.value)  # says how to fix it
    assert server.handshakes == 1  # not retried: another try cannot fix a certificate


def test_ca_bundle_from_the_connection_is_used_by_the_sync_hook(tls, monkeypatch):
    server, ca = tls
    _tls_connection(monkeypatch, server.url, ca_bundle=str(ca))
    the_hook = RecordingHook()
    assert the_hook.get_conn().verify == str(ca)
    assert the_hook.get_recording(REC)["sid"] == REC


def test_ca_bundle_is_given_to_each_request_so_the_environment_cannot_override_it(
    telnyx_conn, monkeypatch, requests_mock, tmp_path
):
    ca, _, _ = _certificates(tmp_path)
    monkeypatch.setenv(
        "AIRFLOW_CONN_TELNYX_DEFAULT",
        json.dumps({**telnyx_conn, "extra": json.dumps({"ca_bundle": str(ca)})}),
    )
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/somewhere/else.pem")
    requests_mock.get(GET_URL, json=COMPLETED)
    RecordingHook().get_recording(REC)
    assert requests_mock.last_request.verify == str(ca)


def test_without_ca_bundle_each_request_verifies(telnyx_conn, requests_mock, monkeypatch):
    requests_mock.get(GET_URL, json=COMPLETED)
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    RecordingHook().get_recording(REC)
    assert requests_mock.last_request.verify is True
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/system-bundle.pem")  # requests' own convention
    RecordingHook().get_recording(REC)
    assert requests_mock.last_request.verify == "/etc/ssl/system-bundle.pem"  # still verifying


async def test_async_client_verifies_tls_and_uses_the_ca_bundle(tls):
    server, ca = tls
    without = TelnyxConnectionConfig.from_fields(
        "c", host=server.url, login=ACCOUNT_SID, password="k", extra=None
    )
    client = AsyncRecordingClient(without, retry_policy=RetryPolicy(max_retries=0))
    try:
        with pytest.raises(TelnyxApiError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.get_recording(REC)
    finally:
        await client.aclose()
    with_ca = TelnyxConnectionConfig.from_fields(
        "c", host=server.url, login=ACCOUNT_SID, password="k", extra={"ca_bundle": str(ca)}
    )
    client = AsyncRecordingClient(with_ca)
    try:
        assert (await client.get_recording(REC))["sid"] == REC
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    ("content", "words"),
    [(None, "no such file"), (b"", "does not load"), (b"not a certificate", "does not load")],
    ids=["missing", "empty", "garbage"],
)
def test_an_unusable_ca_bundle_is_a_clear_error_before_any_request(
    telnyx_conn, monkeypatch, requests_mock, tmp_path, content, words
):
    path = tmp_path / "bundle.pem"
    if content is not None:
        path.write_bytes(content)
    monkeypatch.setenv(
        "AIRFLOW_CONN_TELNYX_DEFAULT",
        json.dumps({**telnyx_conn, "extra": json.dumps({"ca_bundle": str(path)})}),
    )
    with pytest.raises(TelnyxValidationError) as raised:
        RecordingHook().get_recording(REC)
    assert "ca_bundle" in str(raised.value)
    assert str(path) in str(raised.value)
    assert words in str(raised.value)
    assert requests_mock.call_count == 0
    config = TelnyxConnectionConfig.from_fields(
        "c", host=None, login=ACCOUNT_SID, password="k", extra={"ca_bundle": str(path)}
    )
    with pytest.raises(TelnyxValidationError, match="ca_bundle"):
        config.ssl_context()
