"""The receiver under attack, as the adversarial review found it: each test is a reproduction that failed
before its fix (or proves a guarantee the review attacked and found holding)."""

from __future__ import annotations

import base64
import threading
import time
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from telnyx_provider.plugins.callbacks import ReceiverSettings, create_app
from telnyx_provider.plugins.receiver_store import TABLE_NAME, ReceiverStore
from tests.plugins.test_callbacks import FORM, URL, callback, events_for, post
from tests.plugins.test_receiver_store import PG_URL, database_urls

TOLERANCE = 300


@pytest.fixture(params=database_urls())
def shared_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """The database the workers' stores share: a SQLite file, or PostgreSQL (``TELNYX_TEST_PG_URL``)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}"
    assert PG_URL
    with create_engine(PG_URL).begin() as conn:
        conn.execute(text(f"DROP TABLE IF EXISTS {TABLE_NAME}"))
    return PG_URL


def _shared_store(url: str, *, clock_ahead: float = 0.0) -> ReceiverStore:
    """A worker's store on the shared database, on a host whose clock is ``clock_ahead`` seconds fast."""
    return ReceiverStore(create_engine(url), clock=lambda: time.time() + clock_ahead)


def _rows(url: str) -> int:
    with create_engine(url).connect() as conn:
        return int(conn.execute(text(f"SELECT COUNT(*) FROM {TABLE_NAME}")).scalar_one())


# --- replays and the clocks of several API-server hosts -------------------------------------------------
def test_a_replay_stays_refused_when_a_host_with_a_faster_clock_purges(
    recordings_asset_in_db, signer, shared_url
):
    """Two API-server hosts whose clocks differ by 15 s (NTP allows far less, a VM resumed from a pause
    far more): the fast one purges the replay row while the other still accepts the request's timestamp."""
    url = shared_url
    on_time = create_app(ReceiverSettings(tolerance=TOLERANCE, store=_shared_store(url)))
    fast = create_app(ReceiverSettings(tolerance=TOLERANCE, store=_shared_store(url, clock_ahead=15)))
    captured = callback()
    body = urlencode(captured).encode()
    # Signed 290 s ago: still within the 300 s tolerance of the on-time host for 10 s more.
    headers = {**FORM, **signer.headers(body, int(time.time()) - (TOLERANCE - 10))}
    with TestClient(on_time) as worker_a, TestClient(fast) as worker_b:
        assert worker_a.post(URL, content=body, headers=headers).status_code == 204
        # Any genuine callback reaching the fast host makes it purge what its clock calls expired.
        assert post(worker_b, signer, urlencode(callback()).encode()).status_code == 204
        replay = worker_a.post(URL, content=body, headers=headers)
    assert replay.status_code == 401, "the replay was accepted again"
    assert len(events_for(captured["RecordingSid"])) == 1


def test_a_replay_with_the_signature_re_encoded_is_refused(client_default, signer):
    """Base64 leaves the last character's low bits unused: another header spelling of the same 64 bytes
    is the same signature (the replay key is the decoded bytes, not the header's text)."""
    fields = callback()
    body = urlencode(fields).encode()
    headers = {**FORM, **signer.headers(body)}
    assert client_default.post(URL, content=body, headers=headers).status_code == 204
    encoded = headers["telnyx-signature-ed25519"]
    respelled = encoded[:-3] + chr(ord(encoded[-3]) + 1) + "=="
    assert respelled != encoded
    assert base64.b64decode(respelled) == base64.b64decode(encoded)
    respelled_headers = {**headers, "telnyx-signature-ed25519": respelled}
    replay = client_default.post(URL, content=body, headers=respelled_headers)
    assert replay.status_code == 401
    assert len(events_for(fields["RecordingSid"])) == 1


def test_a_replay_naming_another_connection_of_the_same_account_is_refused(
    client_default, signer, monkeypatch
):
    """The POST query is not signed: the same delivery sent again under another ``conn_id`` whose key and
    login are the account's (a second connection of the account) is still the same signature."""
    import json

    from tests.conftest import ACCOUNT_SID

    monkeypatch.setenv(
        "AIRFLOW_CONN_TELNYX_SECOND",
        json.dumps({"conn_type": "telnyx", "login": ACCOUNT_SID, "extra": {"public_key": signer.public_key}}),
    )
    fields = callback()
    body = urlencode(fields).encode()
    headers = {**FORM, **signer.headers(body)}
    assert client_default.post(URL, content=body, headers=headers).status_code == 204
    replay = client_default.post(URL, content=body, headers=headers, params={"conn_id": "telnyx_second"})
    assert replay.status_code == 401
    assert len(events_for(fields["RecordingSid"])) == 1


def test_the_original_and_its_replay_racing_on_two_workers_store_one_event(
    recordings_asset_in_db, signer, shared_url
):
    """The same delivery at the same instant on two workers (two stores, two engines, one database)."""
    url = shared_url
    apps = [create_app(ReceiverSettings(store=_shared_store(url))) for _ in range(2)]
    for round_ in range(5):
        fields = callback()
        body = urlencode(fields).encode()
        headers = {**FORM, **signer.headers(body)}
        barrier = threading.Barrier(2)
        answers: list[int] = []

        def deliver(app, barrier=barrier, body=body, headers=headers, answers=answers) -> None:
            with TestClient(app) as client:
                barrier.wait()
                answers.append(client.post(URL, content=body, headers=headers).status_code)

        threads = [threading.Thread(target=deliver, args=(app,)) for app in apps]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert sorted(answers) == [204, 401], f"round {round_}: {answers}"
        assert len(events_for(fields["RecordingSid"])) == 1


def test_only_verified_requests_write_to_the_shared_table(recordings_asset_in_db, signer, shared_url):
    """A flood of valid-looking requests (fresh timestamps, well-formed signatures, forged) adds no row."""
    import os

    url = shared_url
    with TestClient(create_app(ReceiverSettings(store=_shared_store(url)))) as client:
        assert post(client, signer, urlencode(callback()).encode()).status_code == 204
        before = _rows(url)
        for _ in range(200):
            body = urlencode(callback()).encode()
            forged = {
                "telnyx-signature-ed25519": base64.b64encode(os.urandom(64)).decode(),
                "telnyx-timestamp": str(int(time.time())),
            }
            assert client.post(URL, content=body, headers={**FORM, **forged}).status_code == 401
    assert before == 1
    assert _rows(url) == before


@pytest.fixture
def client_default(recordings_asset_in_db, signer):
    with TestClient(create_app(ReceiverSettings(tolerance=TOLERANCE))) as client:
        yield client


# --- forged requests naming made-up connection ids, and the genuine callbacks around them ---------------
class BlockingSecrets:
    """A secrets backend for ``ConnectionKeys(load=...)``: the test account's key for ``telnyx_default``,
    at once; any other id blocks (a slow backend searching for an id that does not exist) until released."""

    def __init__(self, signer) -> None:
        from telnyx_provider.plugins.recording_events import CallbackKey
        from telnyx_provider.signatures import load_public_key
        from tests.conftest import ACCOUNT_SID

        self.key = CallbackKey("telnyx_default", load_public_key(signer.public_key), ACCOUNT_SID)
        self.released = threading.Event()
        self.blocked = 0
        self.lookups: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, conn_id: str):
        from telnyx_provider.plugins.recording_events import ReceiverConfigError

        with self._lock:
            self.lookups.append(conn_id)
        if conn_id == "telnyx_default":
            return self.key
        with self._lock:
            self.blocked += 1
        self.released.wait(60)
        raise ReceiverConfigError(f"no connection {conn_id!r}")


def _forged(conn_id: str) -> dict[str, object]:
    import os

    body = urlencode(callback()).encode()
    headers = {
        **FORM,
        "telnyx-signature-ed25519": base64.b64encode(os.urandom(64)).decode(),
        "telnyx-timestamp": str(int(time.time())),
    }
    return {"content": body, "headers": headers, "params": {"conn_id": conn_id}}


async def test_forged_requests_naming_new_ids_do_not_hold_up_genuine_callbacks(
    recordings_asset_in_db, signer, shared_url
):
    """Review finding: every lookup, cached or not, waited for one of the worker's four lookup slots, so
    forged requests naming new ids (each a slow secrets-backend search) queued genuine callbacks behind
    them, even those whose key was cached, and the refresh of a connection's key after its 30 s."""
    import asyncio

    import httpx

    from telnyx_provider.plugins.recording_events import KEY_CACHE_SECONDS, ConnectionKeys

    class Clock:
        now = 1000.0

        def __call__(self) -> float:
            return self.now

    secrets, clock = BlockingSecrets(signer), Clock()
    keys = ConnectionKeys(load=secrets, clock=clock)
    keys.get("telnyx_default")
    app = create_app(ReceiverSettings(connection_keys=keys.get, store=_shared_store(shared_url)))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as client:
        flood = [asyncio.create_task(client.post(URL, **_forged(f"made_up_{n}"))) for n in range(12)]
        try:
            while secrets.blocked < 4:  # every lookup slot is taken by a forged request's search
                await asyncio.sleep(0.01)
            for when in ("while its key is cached", "once its key must be read again"):
                fields = callback()
                body = urlencode(fields).encode()
                genuine = client.post(URL, content=body, headers={**FORM, **signer.headers(body)})
                try:
                    reply = await asyncio.wait_for(genuine, timeout=20)
                except asyncio.TimeoutError:
                    pytest.fail(f"a genuine callback {when} waited behind the forged requests' lookups")
                assert reply.status_code == 204, (when, reply.text)
                assert len(events_for(fields["RecordingSid"])) == 1
                clock.now += KEY_CACHE_SECONDS + 1
            assert not any(task.done() for task in flood)  # the forged ones are still waiting
        finally:
            secrets.released.set()
            answers = await asyncio.gather(*flood)
    assert {reply.status_code for reply in answers} == {401}
    assert secrets.lookups.count("telnyx_default") == 2  # read once, then once more after 30 s


def test_a_flood_of_made_up_ids_does_not_evict_a_connection_s_key(signer):
    """Review finding: keys and failed lookups shared one LRU of 1,024 ids, so 1,024 forged requests naming
    new ids evicted the real connection's key, and each genuine callback then cost a lookup (queued behind
    the forged ones)."""
    from telnyx_provider.plugins.recording_events import (
        KEY_CACHE_ENTRIES,
        ConnectionKeys,
        ReceiverConfigError,
    )

    secrets = BlockingSecrets(signer)
    secrets.released.set()  # an instant backend
    keys = ConnectionKeys(load=secrets)
    assert keys.get("telnyx_default") == secrets.key
    for n in range(2 * KEY_CACHE_ENTRIES):
        with pytest.raises(ReceiverConfigError):
            keys.get(f"made_up_{n}")
    assert keys.get("telnyx_default") == secrets.key
    assert secrets.lookups.count("telnyx_default") == 1
    with pytest.raises(ReceiverConfigError):  # failures stay bounded: the oldest made-up id is read again
        keys.get("made_up_0")
    assert secrets.lookups.count("made_up_0") == 2


# --- GET callbacks behind a proxy, and the AccountSid check -------------------------------------------------
@pytest.mark.parametrize(
    "rewrite",
    [
        pytest.param(lambda query: "&".join(reversed(query.split("&"))), id="reordered"),
        pytest.param(lambda query: query.replace("%3A", ":"), id="decoded"),
        pytest.param(lambda query: query.replace("+", "%20"), id="re-encoded"),
        pytest.param(lambda query: query + "&", id="extra-ampersand"),
    ],
)
def test_a_get_callback_whose_query_a_proxy_rewrote_fails_closed(client_default, signer, rewrite):
    fields = callback(RecordingStartTime="Tue, 01 Dec 2026 03:00:00 +0000")  # ':' and ' ' to encode
    query = urlencode(fields)
    assert "%3A" in query
    assert "+" in query
    headers = signer.headers(query.encode())  # Telnyx signed the query it sent
    rewritten = rewrite(query)
    assert rewritten != query
    assert client_default.get(f"{URL}?{rewritten}", headers=headers).status_code == 401
    assert events_for(fields["RecordingSid"]) == []
    assert client_default.get(f"{URL}?{query}", headers=headers).status_code == 204  # as sent: accepted


@pytest.mark.parametrize(
    "account_sid",
    [
        pytest.param(lambda sid: sid.upper(), id="upper-case"),
        pytest.param(lambda sid: f" {sid}", id="leading-space"),
        pytest.param(lambda sid: f"{sid} ", id="trailing-space"),
        pytest.param(lambda sid: sid.replace("-", ""), id="no-dashes"),
        pytest.param(lambda sid: "", id="empty"),
    ],
)
def test_an_account_sid_that_only_resembles_the_login_is_refused(client_default, signer, account_sid):
    from tests.conftest import ACCOUNT_SID

    variant = account_sid(ACCOUNT_SID)
    fields = {**callback(), "AccountSid": variant}
    reply = post(client_default, signer, urlencode(fields).encode())
    assert reply.status_code in (400, 401), reply.text  # not a valid id, or not the connection's login
    assert events_for(fields["RecordingSid"]) == []
