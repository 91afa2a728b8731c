"""Issue 10 against the TeXML sandbox over real HTTP: lifecycle operators, storing audio, transcriptions.

Storing goes to a real local folder (``file://``) and to an in-memory file system attached as ``s3``
(``airflow.sdk.io.attach``), through ``dest_conn_id``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
import wave
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from fsspec.implementations.memory import MemoryFileSystem

from telnyx_provider.errors import RecordingNotReadyError, TelnyxApiError
from telnyx_provider.hooks.recording import RecordingHook
from telnyx_provider.operators.recording import (
    DeleteRecordingOperator,
    PauseCallRecordingOperator,
    ResumeCallRecordingOperator,
    StopCallRecordingOperator,
)
from telnyx_provider.retry import RetryPolicy
from telnyx_provider.sandbox import Sandbox
from telnyx_provider.transfers.recording import RecordingToStorageOperator
from tests.sandbox.conftest import wait_for

NO_RETRY = RetryPolicy(max_retries=0, max_wait=0.01, budget=10, initial_wait=0.01)
ONE_RETRY = RetryPolicy(max_retries=1, max_wait=0.01, budget=10, initial_wait=0.01)


@pytest.fixture
def fast_sandbox(monkeypatch):
    """Recordings end 0.3 s after they start and complete 0.1 s later."""
    with Sandbox(port=0, recording_seconds=0.3, processing_delay=0.1, seed=3) as sb:
        monkeypatch.setenv("AIRFLOW_CONN_TELNYX_DEFAULT", sb.airflow_conn_json())
        yield sb


@pytest.fixture
def hook(fast_sandbox):
    hook = RecordingHook(retry_policy=NO_RETRY)
    yield hook
    hook.close()


def completed_recording(sandbox: Sandbox, hook: RecordingHook, **call: object) -> dict:
    call_sid = sandbox.create_call(**call)
    sid = hook.start_call_recording(call_sid, play_beep=False)["sid"]
    return wait_for(lambda: (r := hook.get_recording(sid))["status"] == "completed" and r, timeout=10)


def leftovers(folder) -> list[str]:
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


# -- lifecycle operators ---------------------------------------------------------------------------


def test_pause_resume_stop_and_delete_operators_against_the_sandbox(sandbox):
    call_sid = sandbox.create_call()
    hook = RecordingHook()
    sid = hook.start_call_recording(call_sid, play_beep=False)["sid"]
    ids = {"call_sid": call_sid, "recording_sid": sid}

    assert PauseCallRecordingOperator(task_id="p", **ids).execute({})["sid"] == sid  # no status: its schema
    assert hook.get_recording(sid)["status"] == "paused"
    assert ResumeCallRecordingOperator(task_id="r", **ids).execute({})["sid"] == sid
    assert hook.get_recording(sid)["status"] == "in-progress"
    assert StopCallRecordingOperator(task_id="s", **ids).execute({})["sid"] == sid
    final = wait_for(lambda: (r := hook.get_recording(sid))["status"] == "completed" and r)

    DeleteRecordingOperator(task_id="d", recording_uri=final["uri"]).execute({})
    with pytest.raises(TelnyxApiError) as raised:
        hook.get_recording(sid)
    assert raised.value.status == 404


# -- storing the audio -------------------------------------------------------------------------------


def test_download_to_a_local_folder_is_a_valid_wav_with_its_checksum(fast_sandbox, hook, tmp_path):
    recording = completed_recording(fast_sandbox, hook)

    stored = hook.download_recording(recording["sid"], f"file://{tmp_path}/calls/")

    path = tmp_path / "calls" / f"{recording['sid']}.wav"
    data = path.read_bytes()
    assert stored == {
        "recording_sid": recording["sid"],
        "call_sid": recording["call_sid"],
        "path": f"file://{path}",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "content_type": "audio/wav",
        "duration": recording["duration"],
    }
    with wave.open(str(path), "rb") as audio:
        assert audio.getnframes() > 0
    assert leftovers(path.parent) == [path.name]
    assert fast_sandbox.stats()["media_requests"] == 1


def test_download_to_memory_s3_through_dest_conn_id(fast_sandbox, hook):
    from airflow.sdk.io import attach

    fs, conn_id, bucket = MemoryFileSystem(), f"s3_{uuid.uuid4().hex[:8]}", f"b-{uuid.uuid4().hex[:8]}"
    attach(protocol="s3", conn_id=conn_id, fs=fs)
    recording = completed_recording(fast_sandbox, hook)

    stored = hook.download_recording(recording["sid"], f"s3://{bucket}/calls/", dest_conn_id=conn_id)

    data = fs.cat_file(f"/{bucket}/calls/{recording['sid']}.wav")
    assert stored["path"] == f"s3://{bucket}/calls/{recording['sid']}.wav"
    assert (stored["size"], stored["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
    assert data[:4] == b"RIFF"


def test_a_transfer_cut_midway_leaves_nothing(fast_sandbox, hook, tmp_path):
    recording = completed_recording(fast_sandbox, hook)
    fast_sandbox.inject_media("cut", count=1)

    with pytest.raises(TelnyxApiError) as raised:
        hook.download_recording(recording["sid"], f"{tmp_path}/")

    assert raised.value.failure == "connection"
    assert leftovers(tmp_path) == []
    assert fast_sandbox.stats()["media_requests"] == 1


def test_a_cut_transfer_is_retried_and_then_stored_whole(fast_sandbox, tmp_path):
    hook = RecordingHook(retry_policy=ONE_RETRY)
    recording = completed_recording(fast_sandbox, hook)
    fast_sandbox.inject_media("cut", count=1)

    stored = hook.download_recording(recording["sid"], f"{tmp_path}/")

    with wave.open(str(tmp_path / f"{recording['sid']}.wav"), "rb") as audio:
        assert audio.getnframes() > 0
    assert stored["size"] == (tmp_path / f"{recording['sid']}.wav").stat().st_size
    assert leftovers(tmp_path) == [f"{recording['sid']}.wav"]
    assert fast_sandbox.stats()["media_requests"] == 2


@pytest.mark.parametrize("refusal", ["403", "404"])
def test_a_refused_link_is_refreshed_once(fast_sandbox, hook, tmp_path, refusal):
    recording = completed_recording(fast_sandbox, hook)
    gets_before = fast_sandbox.stats()["gets_per_recording"][recording["sid"]]
    fast_sandbox.inject_media(refusal, count=1)

    hook.download_recording(recording["sid"], f"{tmp_path}/")

    stats = fast_sandbox.stats()
    assert stats["gets_per_recording"][recording["sid"]] - gets_before == 2  # right before, and the refresh
    assert stats["media_requests"] == 2
    assert leftovers(tmp_path) == [f"{recording['sid']}.wav"]


def test_a_link_refused_twice_fails_without_writing(fast_sandbox, hook, tmp_path):
    recording = completed_recording(fast_sandbox, hook)
    fast_sandbox.inject_media("403", count=2)

    with pytest.raises(TelnyxApiError) as raised:
        hook.download_recording(recording["sid"], f"{tmp_path}/")

    assert raised.value.status == 403
    assert "Signature" not in str(raised.value)
    assert leftovers(tmp_path) == []


def test_an_expired_link_is_never_used_a_fresh_one_is_fetched(monkeypatch, tmp_path):
    with Sandbox(port=0, recording_seconds=0.3, processing_delay=0.1, media_url_ttl=1) as sb:
        monkeypatch.setenv("AIRFLOW_CONN_TELNYX_DEFAULT", sb.airflow_conn_json())
        hook = RecordingHook(retry_policy=NO_RETRY)
        old_link = completed_recording(sb, hook)["media_url"]
        expires = int(parse_qs(urlsplit(old_link).query)["Expires"][0])
        wait_for(lambda: time.time() > expires + 0.5, timeout=5)
        assert requests.get(old_link, timeout=5).status_code == 403  # the link a task got earlier expired

        sid = urlsplit(old_link).path.rsplit("/", 1)[-1].removesuffix(".wav")
        stored = hook.download_recording(sid, f"{tmp_path}/")

        assert stored["size"] > 44
        assert sb.stats()["media_requests"] == 2  # ours fetched a fresh link and needed no refresh


def test_the_api_key_goes_to_the_apis_own_origin_only(fast_sandbox, monkeypatch, tmp_path):
    hook = RecordingHook(retry_policy=NO_RETRY)
    own = completed_recording(fast_sandbox, hook)
    hook.download_recording(own["sid"], f"{tmp_path}/own/")
    assert fast_sandbox.stats()["media_requests_with_auth"] == 1  # media on the API's own host and port

    # The same sandbox reached as "localhost": its media links (127.0.0.1) are now a foreign host.
    conn = json.loads(fast_sandbox.airflow_conn_json())
    conn["host"] = fast_sandbox.base_url.replace("127.0.0.1", "localhost")
    monkeypatch.setenv("AIRFLOW_CONN_TELNYX_DEFAULT", json.dumps(conn))
    foreign = RecordingHook(retry_policy=NO_RETRY)
    other = completed_recording(fast_sandbox, foreign)
    foreign.download_recording(other["sid"], f"{tmp_path}/foreign/")

    stats = fast_sandbox.stats()
    assert stats["media_requests"] == 2
    assert stats["media_requests_with_auth"] == 1


def test_a_recording_still_in_progress_is_refused_before_any_media_request(sandbox, tmp_path):
    hook = RecordingHook()
    call_sid = sandbox.create_call()
    sid = hook.start_call_recording(call_sid)["sid"]

    with pytest.raises(RecordingNotReadyError, match=sid):
        hook.download_recording(sid, f"{tmp_path}/")

    assert sandbox.stats()["media_requests"] == 0
    assert leftovers(tmp_path) == []


def test_no_log_line_shows_a_media_link(fast_sandbox, hook, tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="telnyx_provider")
    recording = completed_recording(fast_sandbox, hook)
    fast_sandbox.inject_media("403", count=1)
    fast_sandbox.inject_media("cut", count=1)

    with pytest.raises(TelnyxApiError) as raised:
        hook.download_recording(recording["sid"], f"{tmp_path}/")

    text = "\n".join(r.getMessage() for r in caplog.records) + str(raised.value)
    assert recording["sid"] in text
    assert "Signature=" not in text
    assert f"/media/{recording['sid']}.wav" not in text


# -- the storage operator ----------------------------------------------------------------------------


def test_storage_operator_deletes_the_recording_only_after_a_verified_upload(fast_sandbox, hook, tmp_path):
    recording = completed_recording(fast_sandbox, hook)
    op = RecordingToStorageOperator(
        task_id="store", recording_sid=recording["sid"], dst=f"{tmp_path}/", delete_after_upload=True
    )

    stored = op.execute(context={})

    assert (tmp_path / f"{recording['sid']}.wav").stat().st_size == stored["size"]
    with pytest.raises(TelnyxApiError) as raised:
        hook.get_recording(recording["sid"])
    assert raised.value.status == 404


# -- transcriptions and listing ----------------------------------------------------------------------


def test_transcriptions_list_get_delete(fast_sandbox, hook):
    recording = completed_recording(fast_sandbox, hook, transcribe=True)
    untranscribed = completed_recording(fast_sandbox, hook)

    found = wait_for(lambda: hook.list_transcriptions(recording_sid=recording["sid"]))
    assert hook.list_transcriptions(recording_sid=untranscribed["sid"]) == []
    (transcription,) = found
    fetched = hook.get_transcription(transcription["sid"])
    assert fetched["recording_sid"] == recording["sid"]
    assert fetched["transcription_text"]

    hook.delete_transcription(transcription["sid"])
    with pytest.raises(TelnyxApiError) as raised:
        hook.get_transcription(transcription["sid"])
    assert raised.value.status == 404


def test_iter_recordings_with_date_created_after(fast_sandbox, hook):
    sids = {completed_recording(fast_sandbox, hook)["sid"] for _ in range(3)}
    now = datetime.now(timezone.utc)

    assert {
        r["sid"] for r in hook.iter_recordings(page_size=2, date_created_after=now - timedelta(hours=1))
    } == sids
    assert list(hook.iter_recordings(page_size=2, date_created_after=now + timedelta(hours=1))) == []
