"""Signed status callbacks (Ed25519 over "{timestamp}|" + raw body or raw query) and byte-for-byte replays."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from telnyx_provider.sandbox import Sandbox

PROVIDER_DIR = Path(__file__).resolve().parents[2] / "provider"


def verify(public_key: str, timestamp: str, payload: bytes, signature: str) -> None:
    """Verify as a receiver does; raises InvalidSignature."""
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key, validate=True))
    key.verify(base64.b64decode(signature, validate=True), timestamp.encode() + b"|" + payload)


def signature_of(item) -> tuple[str, str]:
    return item.headers["telnyx-signature-ed25519"], item.headers["telnyx-timestamp"]


def start_with_callback(client, receiver, path="/cb", **form) -> tuple[str, str]:
    call = client.sandbox.create_call()
    sid = client.start_ok(call, RecordingStatusCallback=f"{receiver.url}{path}", **form)["sid"]
    return call, sid


def test_post_callback_signature_verifies_over_timestamp_and_raw_body(
    sandbox_client, sandbox_receiver, sandbox_wait
):
    sandbox = sandbox_client.sandbox
    assert len(base64.b64decode(sandbox.public_key, validate=True)) == 32
    before = time.time()
    call, sid = start_with_callback(sandbox_client, sandbox_receiver)
    sandbox.hangup(call)
    (item,) = sandbox_wait(lambda: sandbox_receiver.items())
    signature, timestamp = signature_of(item)
    assert len(base64.b64decode(signature)) == 64
    assert int(before) - 1 <= int(timestamp) <= time.time() + 1
    assert item.form["RecordingSid"] == sid
    verify(sandbox.public_key, timestamp, item.raw_body, signature)

    flipped = bytes([item.raw_body[0] ^ 0x01]) + item.raw_body[1:]
    for payload, stamp in ((flipped, timestamp), (item.raw_body + b"&x=1", timestamp), (item.raw_body, "1")):
        with pytest.raises(InvalidSignature):
            verify(sandbox.public_key, stamp, payload, signature)
    with Sandbox(port=0) as other:  # another sandbox's key does not verify it
        assert other.public_key != sandbox.public_key
        with pytest.raises(InvalidSignature):
            verify(other.public_key, timestamp, item.raw_body, signature)
    assert sandbox.stats()["callbacks_by_recording"] == {sid: 1}


def test_get_callback_signs_the_raw_query_string(sandbox_client, sandbox_receiver, sandbox_wait):
    sandbox = sandbox_client.sandbox
    call, _ = start_with_callback(
        sandbox_client, sandbox_receiver, "/get?token=t%2Fx", RecordingStatusCallbackMethod="GET"
    )
    sandbox.hangup(call)
    (item,) = sandbox_wait(lambda: sandbox_receiver.items())
    assert item.method == "GET"
    assert item.raw_body == b""
    assert item.raw_query.startswith("token=t%2Fx&AccountSid=")
    signature, timestamp = signature_of(item)
    verify(sandbox.public_key, timestamp, item.raw_query.encode(), signature)
    with pytest.raises(InvalidSignature):
        verify(
            sandbox.public_key, timestamp, item.raw_query.replace("completed", "absent").encode(), signature
        )


def test_timestamp_is_in_the_services_skewed_clock(sandbox_make, sandbox_receiver, sandbox_wait):
    client = sandbox_make(clock_skew=-900, processing_delay=0.05)
    call, _ = start_with_callback(client, sandbox_receiver)
    client.sandbox.hangup(call)
    (item,) = sandbox_wait(lambda: sandbox_receiver.items())
    signature, timestamp = signature_of(item)
    assert abs(int(timestamp) - (time.time() - 900)) < 5
    verify(client.sandbox.public_key, timestamp, item.raw_body, signature)


def test_replay_resends_the_last_callback_byte_for_byte(sandbox_client, sandbox_receiver, sandbox_wait):
    sandbox = sandbox_client.sandbox
    call, sid = start_with_callback(
        sandbox_client, sandbox_receiver, RecordingStatusCallbackEvent="in-progress completed"
    )
    sandbox.hangup(call)
    original = sandbox_wait(lambda: len(sandbox_receiver.items()) == 2 and sandbox_receiver.items()[1])
    assert original.form["RecordingStatus"] == "completed"
    sent_at = int(signature_of(original)[1])
    sandbox_wait(lambda: time.time() >= sent_at + 1.05, timeout=3)  # a fresh timestamp would now differ

    assert sandbox.replay_callback(sid) == 200
    replayed = sandbox_receiver.items()[2]  # synchronous: already received
    assert (replayed.method, replayed.path, replayed.raw_query, replayed.raw_body) == (
        original.method,
        original.path,
        original.raw_query,
        original.raw_body,
    )
    assert replayed.headers == original.headers  # same signature, same timestamp
    signature, timestamp = signature_of(replayed)
    assert int(timestamp) == sent_at  # not re-signed
    verify(sandbox.public_key, timestamp, replayed.raw_body, signature)
    stats = sandbox.stats()
    assert stats["callbacks_by_recording"] == {sid: 3}
    assert stats["callbacks_replayed"] == 1

    url = f"{sandbox.origin}/_sandbox/recordings/{sid}/callbacks/replay"
    reply = requests.post(url, timeout=5)
    assert reply.json() == {"recording_sid": sid, "status": 200}
    assert sandbox_receiver.items()[3].headers == original.headers


def test_replay_without_a_callback_is_a_404(sandbox_client):
    sandbox = sandbox_client.sandbox
    sid = sandbox_client.start_ok(sandbox.create_call())["sid"]  # no callback URL
    with pytest.raises(KeyError, match=sid):
        sandbox.replay_callback(sid)
    reply = requests.post(f"{sandbox.origin}/_sandbox/recordings/{sid}/callbacks/replay", timeout=5)
    assert reply.status_code == 404
    assert "No status callback" in reply.json()["errors"][0]["detail"]


def test_replay_reports_a_refusing_receiver(sandbox_client, sandbox_receiver, sandbox_wait):
    sandbox = sandbox_client.sandbox
    call, sid = start_with_callback(sandbox_client, sandbox_receiver, "/fail")
    sandbox.hangup(call)
    sandbox_wait(lambda: sandbox.stats()["callbacks_failed"] == 1)
    assert sandbox.replay_callback(sid) == 500
    assert sandbox.stats()["callbacks_failed"] == 2


def test_importing_the_sandbox_does_not_import_cryptography():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PROVIDER_DIR), os.environ.get("PYTHONPATH", "")]))
    code = "import sys, telnyx_provider.sandbox; print('cryptography' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert result.stdout.strip() == "False", result.stderr
