"""RecordingHook.download_recording over a mocked transport (requests-mock), to real file systems.

Destinations are a temporary local folder (``file://`` and plain paths) and an fsspec in-memory file system
attached as ``s3`` through Airflow's ``attach(protocol="s3", conn_id=..., fs=...)``, written through
``dest_conn_id``.
"""

from __future__ import annotations

import hashlib
import io
import logging

import pytest
from urllib3.exceptions import ProtocolError

from telnyx_provider.errors import (
    RecordingFailedError,
    RecordingIncompleteError,
    RecordingNotReadyError,
    RecordingStorageError,
    TelnyxApiError,
    TelnyxValidationError,
)
from telnyx_provider.hooks.recording import RecordingHook
from telnyx_provider.retry import RetryPolicy
from tests.conftest import ACCOUNT_SID, MOCK_BASE_URL, SECRET_KEY

RECORDING_SID = "b08f0fa1-a32c-4218-b3b5-9cf78941ccac"
CALL_SID = "v3:KBnLO0ZK3DhKM5s7bE9VluaSmKsOchKht_fUYvxcp8ysbmzCCtpkmA"
GET_URL = f"{MOCK_BASE_URL}/texml/Accounts/{ACCOUNT_SID}/Recordings/{RECORDING_SID}.json"
SIGNATURE = "SIGNATURE0123456789abcdef"
MEDIA_URL = (
    f"https://media.cdn.test/recordings/{RECORDING_SID}.wav?X-Amz-Expires=600&X-Amz-Signature={SIGNATURE}"
)
FRESH_SIGNATURE = "FRESHSIG0123456789abcdef"
FRESH_MEDIA_URL = MEDIA_URL.replace(SIGNATURE, FRESH_SIGNATURE)
AUDIO = b"RIFF" + bytes(range(256)) * 4000  # ~1 MB: several chunks
AUDIO_SHA = hashlib.sha256(AUDIO).hexdigest()
NO_RETRY = RetryPolicy(max_retries=0, max_wait=0.01, budget=5, initial_wait=0.001)
ONE_RETRY = RetryPolicy(max_retries=1, max_wait=0.01, budget=5, initial_wait=0.001)


def recording(media_url: str | None = MEDIA_URL, status: str = "completed", duration: object = "7") -> dict:
    return {
        "sid": RECORDING_SID,
        "account_sid": ACCOUNT_SID,
        "call_sid": CALL_SID,
        "status": status,
        "duration": duration,
        "media_url": media_url,
        "date_created": "Fri, 11 Aug 2023 19:12:11 +0000",
    }


@pytest.fixture
def hook(telnyx_conn):
    return RecordingHook(retry_policy=NO_RETRY)


class CutBody(io.RawIOBase):
    """A body that breaks after ``cut`` bytes, as a connection reset midway does."""

    def __init__(self, data: bytes, cut: int) -> None:
        self.data, self.cut, self.offset = data, cut, 0

    def readable(self) -> bool:
        return True

    def read1(self, size: int = -1) -> bytes:
        """As a socket's reply does: what is there, without waiting for more (urllib3 reads so)."""
        return self.read(size)

    def read(self, size: int = -1) -> bytes:
        if self.offset >= self.cut:
            raise ProtocolError("Connection broken: IncompleteRead", ConnectionResetError(104, "reset"))
        end = min(self.cut, self.offset + (size if size and size > 0 else len(self.data)))
        piece, self.offset = self.data[self.offset : end], end
        return piece


def media_reply(body: object = AUDIO, content_type: str = "audio/wav", status: int = 200) -> dict:
    content = body if isinstance(body, io.IOBase) else io.BytesIO(body)  # type: ignore[arg-type]
    size = len(AUDIO) if isinstance(body, CutBody) else len(body)  # type: ignore[arg-type]
    headers = {"Content-Type": content_type, "Content-Length": str(size)}
    return {"body": content, "headers": headers, "status_code": status}


def leftovers(folder) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def test_download_to_a_file_url_folder_names_the_file_and_returns_the_contract(hook, requests_mock, tmp_path):
    requests_mock.get(GET_URL, json=recording())
    media = requests_mock.get(MEDIA_URL, **media_reply())

    result = hook.download_recording(RECORDING_SID, f"file://{tmp_path}/calls/")

    stored = tmp_path / "calls" / f"{RECORDING_SID}.wav"
    assert result == {
        "recording_sid": RECORDING_SID,
        "call_sid": CALL_SID,
        "path": f"file://{stored}",
        "size": len(AUDIO),
        "sha256": AUDIO_SHA,
        "content_type": "audio/wav",
        "duration": 7,
    }
    assert stored.read_bytes() == AUDIO
    assert leftovers(stored.parent) == [stored.name]  # no temporary object left beside it
    assert media.call_count == 1
    assert "Authorization" not in media.last_request.headers  # the link is on a foreign host


def test_download_to_a_plain_local_path_returns_a_file_url(hook, requests_mock, tmp_path, monkeypatch):
    requests_mock.get(GET_URL, json=recording())
    requests_mock.get(MEDIA_URL, **media_reply())
    monkeypatch.chdir(tmp_path)

    result = hook.download_recording(RECORDING_SID, "out/call.wav")

    assert result["path"] == f"file://{tmp_path}/out/call.wav"
    assert (tmp_path / "out" / "call.wav").read_bytes() == AUDIO


def test_download_to_memory_s3_through_dest_conn_id(hook, requests_mock, memory_s3):
    conn_id, fs, bucket = memory_s3
    requests_mock.get(GET_URL, json=recording())
    requests_mock.get(MEDIA_URL, **media_reply(content_type="audio/mpeg"))

    result = hook.download_recording(RECORDING_SID, f"s3://{bucket}/archive/", dest_conn_id=conn_id)

    key = f"{bucket}/archive/{RECORDING_SID}.mp3"
    assert result["path"] == f"s3://{key}"
    assert fs.cat_file(f"/{key}") == AUDIO
    assert result["sha256"] == AUDIO_SHA
    assert [p.rsplit("/", 1)[-1] for p in fs.find(f"/{bucket}")] == [f"{RECORDING_SID}.mp3"]


def test_download_to_an_object_storage_path_uses_its_own_connection(hook, requests_mock, memory_s3):
    from airflow.sdk import ObjectStoragePath

    conn_id, fs, bucket = memory_s3
    requests_mock.get(GET_URL, json=recording())
    requests_mock.get(MEDIA_URL, **media_reply())

    result = hook.download_recording(
        RECORDING_SID, ObjectStoragePath(f"s3://{bucket}/one.wav", conn_id=conn_id)
    )

    assert result["path"] == f"s3://{bucket}/one.wav"
    assert fs.cat_file(f"/{bucket}/one.wav") == AUDIO


def test_an_expired_link_is_refreshed_once_by_fetching_the_recording_again(hook, requests_mock, tmp_path):
    gets = requests_mock.get(GET_URL, [{"json": recording()}, {"json": recording(FRESH_MEDIA_URL)}])
    expired = requests_mock.get(MEDIA_URL, status_code=403, text="<Error><Code>AccessDenied</Code></Error>")
    fresh = requests_mock.get(FRESH_MEDIA_URL, **media_reply())

    result = hook.download_recording(RECORDING_SID, tmp_path / "x.wav")

    assert (gets.call_count, expired.call_count, fresh.call_count) == (2, 1, 1)
    assert (tmp_path / "x.wav").read_bytes() == AUDIO
    assert result["sha256"] == AUDIO_SHA


@pytest.mark.parametrize("status", [403, 404])
def test_a_link_refused_twice_fails_without_writing_or_showing_the_link(
    hook, requests_mock, tmp_path, status
):
    requests_mock.get(GET_URL, [{"json": recording()}, {"json": recording(FRESH_MEDIA_URL)}])
    body = f"<Error><Code>AccessDenied</Code><Url>{FRESH_MEDIA_URL}</Url></Error>"
    requests_mock.get(MEDIA_URL, status_code=status)
    requests_mock.get(FRESH_MEDIA_URL, status_code=status, text=body)

    with pytest.raises(TelnyxApiError) as caught:
        hook.download_recording(RECORDING_SID, f"{tmp_path}/")

    error = caught.value
    assert error.status == status
    assert RECORDING_SID in str(error)
    assert "media.cdn.test" in str(error)
    assert "expired" in str(error)
    for secret in (SIGNATURE, FRESH_SIGNATURE, "/recordings/"):
        assert secret not in str(error)
        assert secret not in repr(error.__dict__)
    assert leftovers(tmp_path) == []


def test_a_transfer_cut_midway_leaves_nothing(hook, requests_mock, tmp_path):
    requests_mock.get(GET_URL, json=recording())
    requests_mock.get(MEDIA_URL, **media_reply(CutBody(AUDIO, cut=len(AUDIO) // 2)))

    with pytest.raises(TelnyxApiError) as caught:
        hook.download_recording(RECORDING_SID, f"file://{tmp_path}/")

    assert caught.value.failure == "connection"
    assert "cut" in str(caught.value)
    assert SIGNATURE not in str(caught.value)
    assert leftovers(tmp_path) == []


def test_a_cut_transfer_is_retried_from_scratch(telnyx_conn, requests_mock, tmp_path):
    hook = RecordingHook(retry_policy=ONE_RETRY)
    gets = requests_mock.get(GET_URL, json=recording())
    media = requests_mock.get(MEDIA_URL, [media_reply(CutBody(AUDIO, cut=300_000)), media_reply()])

    result = hook.download_recording(RECORDING_SID, f"file://{tmp_path}/")

    assert media.call_count == 2
    assert gets.call_count == 2
    assert result["size"] == len(AUDIO)
    assert result["sha256"] == AUDIO_SHA
    assert leftovers(tmp_path) == [f"{RECORDING_SID}.wav"]


def test_a_short_body_is_not_stored(hook, requests_mock, tmp_path):
    requests_mock.get(GET_URL, json=recording())
    short = {"body": io.BytesIO(AUDIO[:1000]), "headers": {"Content-Length": str(len(AUDIO))}}
    requests_mock.get(MEDIA_URL, **short)

    with pytest.raises(RecordingIncompleteError) as caught:
        hook.download_recording(RECORDING_SID, tmp_path / "short.wav")

    assert (caught.value.received, caught.value.retryable) == (1000, True)
    assert f"announced {len(AUDIO)} bytes" in str(caught.value)
    assert leftovers(tmp_path) == []


def test_a_cut_transfer_to_memory_s3_leaves_nothing(hook, requests_mock, memory_s3):
    conn_id, fs, bucket = memory_s3
    requests_mock.get(GET_URL, json=recording())
    requests_mock.get(MEDIA_URL, **media_reply(CutBody(AUDIO, cut=700_000)))

    with pytest.raises(TelnyxApiError):
        hook.download_recording(RECORDING_SID, f"s3://{bucket}/a/", dest_conn_id=conn_id)

    assert fs.find(f"/{bucket}") == []


@pytest.mark.parametrize(
    ("media_url", "sends_key"),
    [
        (f"{MOCK_BASE_URL}/media/{RECORDING_SID}.wav", True),  # the API's own origin
        (f"HTTPS://TELNYX.TEST:443/media/{RECORDING_SID}.wav", True),  # same origin, spelled otherwise
        (f"https://telnyx.test:8443/media/{RECORDING_SID}.wav", False),  # another port
        (f"http://telnyx.test/media/{RECORDING_SID}.wav", False),  # another scheme
        (f"https://telnyx.test.evil.example/media/{RECORDING_SID}.wav", False),
        (MEDIA_URL, False),
    ],
)
def test_the_api_key_goes_only_to_the_apis_own_origin(hook, requests_mock, tmp_path, media_url, sends_key):
    requests_mock.get(GET_URL, json=recording(media_url))
    media = requests_mock.get(media_url, **media_reply())

    hook.download_recording(RECORDING_SID, f"{tmp_path}/")

    headers = media.last_request.headers
    assert ("Authorization" in headers) is sends_key
    if sends_key:
        assert headers["Authorization"] == f"Bearer {SECRET_KEY}"


def test_a_redirect_gets_its_own_headers(hook, requests_mock, tmp_path):
    own = f"{MOCK_BASE_URL}/media/{RECORDING_SID}.wav"
    requests_mock.get(GET_URL, json=recording(own))
    first = requests_mock.get(own, status_code=302, headers={"Location": MEDIA_URL})
    second = requests_mock.get(MEDIA_URL, **media_reply())

    hook.download_recording(RECORDING_SID, f"{tmp_path}/")

    assert first.last_request.headers["Authorization"] == f"Bearer {SECRET_KEY}"
    assert "Authorization" not in second.last_request.headers


@pytest.mark.parametrize(
    ("status", "duration", "media_url", "error"),
    [
        ("in-progress", None, None, RecordingNotReadyError),
        ("paused", None, None, RecordingNotReadyError),
        ("completed", None, MEDIA_URL, RecordingNotReadyError),  # still processing
        ("completed", "7", None, RecordingNotReadyError),
        ("absent", "0", None, RecordingFailedError),
    ],
)
def test_a_recording_that_is_not_final_is_refused_before_anything_is_written(
    hook, requests_mock, tmp_path, status, duration, media_url, error
):
    requests_mock.get(GET_URL, json=recording(media_url, status=status, duration=duration))
    media = requests_mock.get(MEDIA_URL, **media_reply())

    with pytest.raises(error, match=RECORDING_SID):
        hook.download_recording(RECORDING_SID, f"{tmp_path}/")

    assert media.call_count == 0
    assert leftovers(tmp_path) == []


def test_an_existing_object_is_refused_before_any_request_unless_overwrite(hook, requests_mock, tmp_path):
    target = tmp_path / "kept.wav"
    target.write_bytes(b"earlier")
    requests_mock.get(GET_URL, json=recording())
    requests_mock.get(MEDIA_URL, **media_reply())

    with pytest.raises(RecordingStorageError, match="already exists"):
        hook.download_recording(RECORDING_SID, target)
    assert requests_mock.call_count == 0
    assert target.read_bytes() == b"earlier"

    hook.download_recording(RECORDING_SID, target, overwrite=True)
    assert target.read_bytes() == AUDIO


def test_an_existing_object_in_a_folder_is_refused(hook, requests_mock, tmp_path):
    (tmp_path / f"{RECORDING_SID}.wav").write_bytes(b"earlier")
    requests_mock.get(GET_URL, json=recording())
    requests_mock.get(MEDIA_URL, **media_reply())

    with pytest.raises(RecordingStorageError):
        hook.download_recording(RECORDING_SID, f"{tmp_path}/")

    assert leftovers(tmp_path) == [f"{RECORDING_SID}.wav"]
    assert (tmp_path / f"{RECORDING_SID}.wav").read_bytes() == b"earlier"


@pytest.mark.parametrize(
    ("content_type", "url_name", "extension"),
    [
        ("audio/x-wav", "a.wav", "wav"),
        ("audio/mpeg; charset=binary", "a", "mp3"),
        ("application/octet-stream", "a.wav", "wav"),  # the link's own extension
        ("application/octet-stream", "a", "bin"),
    ],
)
def test_a_folder_destination_names_the_file_from_the_content_type(
    hook, requests_mock, tmp_path, content_type, url_name, extension
):
    media_url = f"https://media.cdn.test/x/{url_name}?sig=abcdefgh12345678"
    requests_mock.get(GET_URL, json=recording(media_url))
    requests_mock.get(media_url, **media_reply(content_type=content_type))

    result = hook.download_recording(RECORDING_SID, f"{tmp_path}/")

    assert result["path"] == f"file://{tmp_path}/{RECORDING_SID}.{extension}"


@pytest.mark.parametrize("bad", [None, 12, "", " /tmp/x", ["a"]])
def test_a_bad_destination_is_refused_before_any_request(hook, requests_mock, bad):
    with pytest.raises(TelnyxValidationError, match="dst"):
        hook.download_recording(RECORDING_SID, bad)
    assert requests_mock.call_count == 0


def test_a_bad_recording_sid_is_refused_before_any_request(hook, requests_mock, tmp_path):
    with pytest.raises(TelnyxValidationError, match="recording_sid"):
        hook.download_recording("a/b", f"{tmp_path}/")
    assert requests_mock.call_count == 0


def test_no_log_line_or_error_shows_the_media_link(hook, requests_mock, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    requests_mock.get(GET_URL, [{"json": recording()}, {"json": recording(FRESH_MEDIA_URL)}])
    requests_mock.get(MEDIA_URL, status_code=403)
    requests_mock.get(FRESH_MEDIA_URL, **media_reply(CutBody(AUDIO, cut=10)))

    with pytest.raises(TelnyxApiError) as caught:
        hook.download_recording(RECORDING_SID, f"{tmp_path}/")

    ours = [r for r in caplog.records if r.name.startswith("telnyx_provider")]
    assert any(RECORDING_SID in r.getMessage() for r in ours)  # the logs do say what happened
    text = "\n".join(r.getMessage() for r in ours) + str(caught.value) + repr(caught.value.__dict__)
    for secret in (SIGNATURE, FRESH_SIGNATURE, f"/recordings/{RECORDING_SID}.wav", SECRET_KEY):
        assert secret not in text
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None


def test_object_name_places_the_file_below_a_folder_from_the_fetched_recording(hook, requests_mock, tmp_path):
    requests_mock.get(GET_URL, json=recording())
    requests_mock.get(MEDIA_URL, **media_reply(content_type="audio/mpeg"))
    seen: list[tuple[str, str]] = []

    def name(fetched, ext):
        seen.append((fetched["sid"], ext))
        return f"{fetched['date_created'][:10]}/{fetched['call_sid']}/{fetched['sid']}.{ext}"

    result = hook.download_recording(RECORDING_SID, f"{tmp_path}/calls/", object_name=name)

    stored = tmp_path / "calls" / "2023-08-11" / CALL_SID / f"{RECORDING_SID}.mp3"
    assert result["path"] == f"file://{stored}"
    assert stored.read_bytes() == AUDIO
    assert seen == [(RECORDING_SID, "mp3")]  # named once the media's type is known
    assert leftovers(stored.parent) == [stored.name]


def test_object_name_needs_a_folder_and_is_refused_before_any_request(hook, requests_mock, tmp_path):
    with pytest.raises(TelnyxValidationError, match="folder"):
        hook.download_recording(RECORDING_SID, f"{tmp_path}/one.wav", object_name=lambda fetched, ext: "x")
    assert requests_mock.call_count == 0
