"""Ed25519 webhook signatures: verification, tolerance and the replay cache (pure, no I/O)."""

from __future__ import annotations

import base64

import pytest

from telnyx_provider.signatures import (
    ReplayCache,
    SignatureError,
    VerifiedSignature,
    load_public_key,
    verify_signature,
)
from tests.signing import Signer

BODY = b"AccountSid=acc&RecordingSid=rec&RecordingStatus=completed"
NOW = 1_800_000_000


def _verify(signer: Signer, payload: bytes, headers: dict[str, str], **kwargs):
    return verify_signature(
        public_key=load_public_key(signer.public_key),
        payload=payload,
        signature_header=headers.get("telnyx-signature-ed25519"),
        timestamp_header=headers.get("telnyx-timestamp"),
        **{"now": NOW, **kwargs},
    )


def test_a_valid_signature_verifies_and_reports_its_timestamp():
    signer = Signer()
    verified = _verify(signer, BODY, signer.headers(BODY, NOW - 10))
    assert verified.timestamp == NOW - 10
    assert len(verified.signature) == 64


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda body: body[:-1] + b"X", id="last-byte"),
        pytest.param(lambda body: b"B" + body[1:], id="first-byte"),
        pytest.param(lambda body: body + b"&x=1", id="appended"),
    ],
)
def test_one_changed_byte_of_the_body_fails(tamper):
    signer = Signer()
    headers = signer.headers(BODY, NOW)
    with pytest.raises(SignatureError, match="does not match"):
        _verify(signer, tamper(BODY), headers)


def test_another_key_fails():
    signer, other = Signer(), Signer()
    with pytest.raises(SignatureError, match="does not match"):
        _verify(signer, BODY, other.headers(BODY, NOW))


def test_the_timestamp_is_part_of_the_signed_message():
    signer = Signer()
    headers = signer.headers(BODY, NOW)
    headers["telnyx-timestamp"] = str(NOW + 1)
    with pytest.raises(SignatureError, match="does not match"):
        _verify(signer, BODY, headers)


@pytest.mark.parametrize("offset", [-301, 301, -10_000])
def test_a_timestamp_outside_the_tolerance_is_stale(offset):
    signer = Signer()
    with pytest.raises(SignatureError, match="stale"):
        _verify(signer, BODY, signer.headers(BODY, NOW + offset))


def test_the_tolerance_is_configurable():
    signer = Signer()
    headers = signer.headers(BODY, NOW - 100)
    assert _verify(signer, BODY, headers, tolerance=120).timestamp == NOW - 100
    with pytest.raises(SignatureError, match="stale"):
        _verify(signer, BODY, headers, tolerance=60)


@pytest.mark.parametrize(
    ("signature", "timestamp", "message"),
    [
        (None, str(NOW), "unsigned"),
        ("", str(NOW), "unsigned"),
        ("c2ln", None, "unsigned"),
        ("not base64!", str(NOW), "base64"),
        (base64.b64encode(b"short").decode(), str(NOW), "64 bytes"),
        (base64.b64encode(bytes(64)).decode(), "yesterday", "Unix seconds"),
        (base64.b64encode(bytes(64)).decode(), "-5", "Unix seconds"),
        (base64.b64encode(bytes(64)).decode(), "1" * 40, "Unix seconds"),
    ],
)
def test_missing_or_malformed_headers_are_refused(signature, timestamp, message):
    signer = Signer()
    with pytest.raises(SignatureError, match=message):
        _verify(signer, BODY, {"telnyx-signature-ed25519": signature, "telnyx-timestamp": timestamp})


@pytest.mark.parametrize("key", ["", "   ", "not base64!", base64.b64encode(bytes(31)).decode(), 42, None])
def test_bad_public_keys_are_refused(key):
    with pytest.raises(ValueError, match="public key"):
        load_public_key(key)


def test_the_replay_cache_refuses_a_signature_seen_within_the_tolerance_then_forgets_it():
    cache = ReplayCache(tolerance=300)
    seen = VerifiedSignature(b"s" * 64, NOW)
    cache.claim(seen, now=NOW)
    with pytest.raises(SignatureError, match="replayed"):
        cache.claim(seen, now=NOW + 200)
    cache.claim(VerifiedSignature(b"t" * 64, NOW), now=NOW + 200)  # another signature is fine
    # Past the tolerance the entry is pruned (the timestamp check refuses such a request anyway).
    cache.claim(VerifiedSignature(b"u" * 64, NOW + 400), now=NOW + 400)
    assert len(cache) == 1


def test_a_released_signature_may_be_claimed_again():
    cache = ReplayCache(tolerance=300)
    seen = VerifiedSignature(b"s" * 64, NOW)
    cache.claim(seen, now=NOW)
    cache.release(seen)
    cache.claim(seen, now=NOW + 1)
    with pytest.raises(SignatureError, match="replayed"):
        cache.claim(seen, now=NOW + 2)


def test_the_header_checks_need_no_key_and_keep_the_timestamp_as_received():
    from telnyx_provider.signatures import check_signature_headers, verify_signed_request

    signer = Signer()
    headers = signer.headers(BODY, NOW)
    checked = check_signature_headers(
        headers["telnyx-signature-ed25519"], " " + headers["telnyx-timestamp"], now=NOW
    )
    assert checked.timestamp == NOW
    assert checked.timestamp_header == " " + str(NOW)  # signed as sent: a padded header fails verification
    with pytest.raises(SignatureError, match="does not match"):
        verify_signed_request(public_key=load_public_key(signer.public_key), payload=BODY, request=checked)


def test_an_oversized_signature_header_is_refused_before_decoding():
    from telnyx_provider.signatures import check_signature_headers

    with pytest.raises(SignatureError, match="64 bytes"):
        check_signature_headers("A" * 100_000, str(NOW), now=NOW)
