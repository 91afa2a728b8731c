"""A download is stored only when its length is proven; what an interrupted one leaves is reused; local files
are 0600; a long transfer that is cut still gets its retry. Over real HTTP against the sandbox, which can
send media with ``Content-Length``, chunked, or with no framing at all (HTTP/1.0 style), cut or whole, WAV or
MP3, and slowly."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import wave

import pytest

from telnyx_provider.errors import RecordingIncompleteError, RecordingStorageError, TelnyxApiError
from telnyx_provider.hooks.recording import RecordingHook
from telnyx_provider.retry import RetryPolicy
from telnyx_provider.sandbox import Sandbox
from telnyx_provider.sandbox.media import mp3_bytes, wav_bytes
from telnyx_provider.transfers.recording import RecordingToStorageOperator
from tests.sandbox.conftest import wait_for

NO_RETRY = RetryPolicy(max_retries=0, max_wait=0.01, budget=10, initial_wait=0.01)
RETRIES = RetryPolicy(max_retries=3, max_wait=0.01, budget=10, initial_wait=0.01)
SECONDS = 5
WAV = wav_bytes(SECONDS, 2)  # what the sandbox serves for a 5 s dual-channel recording


@pytest.fixture
def sandbox(monkeypatch):
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    with Sandbox(port=0, recording_seconds=0.2, processing_delay=0.05, seed=11, media_seconds_cap=30) as sb:
        monkeypatch.setenv("AIRFLOW_CONN_TELNYX_DEFAULT", sb.airflow_conn_json())
        yield sb


def use_retries(sandbox: Sandbox, monkeypatch, max_retries: int) -> None:
    """The connection's own retry settings (what an operator's hook reads)."""
    conn = json.loads(sandbox.airflow_conn_json())
    conn["extra"].update(max_retries=max_retries, retry_max_wait=0.01, retry_budget=10)
    monkeypatch.setenv("AIRFLOW_CONN_TELNYX_DEFAULT", json.dumps(conn))


def completed(sandbox: Sandbox, seconds: int = SECONDS) -> str:
    hook = RecordingHook(retry_policy=NO_RETRY)
    sid = hook.start_call_recording(sandbox.create_call(audio_seconds=seconds), play_beep=False)["sid"]
    wait_for(lambda: hook.get_recording(sid)["status"] == "completed", timeout=10)
    hook.close()
    return sid


def exists(sid: str) -> bool:
    """Whether the recording is still on the (sandbox's) service."""
    try:
        RecordingHook(retry_policy=NO_RETRY).get_recording(sid)
    except TelnyxApiError as error:
        if error.status == 404:
            return False
        raise
    return True


def files(folder) -> list[str]:
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


def partial_in(folder, sid: str, at_least: int):
    """The partial file of ``sid``'s download in ``folder`` once it holds ``at_least`` bytes, else None."""
    found = [path for path in folder.glob(f".{sid}.wav*.part") if path.stat().st_size >= at_least]
    return found[0] if found else None


def kill_midway(command: list[str], folder, sid: str, at_least: int):
    """Run ``command``, SIGKILL it once its partial file holds ``at_least`` bytes; return that file."""
    worker = subprocess.Popen(command, env=dict(os.environ))
    try:
        partial = wait_for(lambda: partial_in(folder, sid, at_least) or worker.poll(), timeout=30)
        assert worker.poll() is None, "the download ended before it could be killed"
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait(10)
    return partial


# -- length proof ----------------------------------------------------------------------------------------


def test_the_reviews_reproduction_a_cut_unframed_download_is_not_stored_and_not_deleted(
    sandbox, monkeypatch, tmp_path
):
    use_retries(sandbox, monkeypatch, 0)
    sid = completed(sandbox)
    sandbox.configure_media(framing="close")  # neither Content-Length nor chunked: the end is a close
    sandbox.inject_media("cut")
    op = RecordingToStorageOperator(
        task_id="store", recording_sid=sid, dst=f"{tmp_path}/", delete_after_upload=True
    )

    with pytest.raises(RecordingIncompleteError) as caught:
        op.execute(context={})

    assert files(tmp_path) == []  # nothing stored, no partial object left
    assert exists(sid)  # Telnyx's only copy is still there
    error = caught.value
    assert (error.recording_sid, error.received, error.retryable) == (sid, len(WAV) // 2, True)
    assert f"declares {len(WAV)} bytes" in str(error)
    assert sandbox.stats()["requests_by_route"].get("DELETE /Recordings/{sid}", 0) == 0


def test_a_cut_unframed_wav_is_retried_and_then_stored_and_deleted(sandbox, monkeypatch, tmp_path):
    use_retries(sandbox, monkeypatch, 1)
    sid = completed(sandbox)
    sandbox.configure_media(framing="close")
    sandbox.inject_media("cut")
    op = RecordingToStorageOperator(
        task_id="store", recording_sid=sid, dst=f"{tmp_path}/", delete_after_upload=True
    )

    stored = op.execute(context={})

    assert (tmp_path / f"{sid}.wav").read_bytes() == WAV
    assert stored["size"] == len(WAV)
    assert sandbox.stats()["media_requests"] == 2
    assert not exists(sid)


def test_a_whole_unframed_wav_is_proven_by_its_riff_header(sandbox, tmp_path):
    sid = completed(sandbox)
    sandbox.configure_media(framing="close")

    stored = RecordingHook(retry_policy=NO_RETRY).download_recording(sid, f"{tmp_path}/")

    path = tmp_path / f"{sid}.wav"
    assert path.read_bytes() == WAV
    assert stored["size"] == len(WAV)
    with wave.open(str(path)) as audio:
        assert audio.getnframes() == SECONDS * 8000


def test_a_whole_unframed_mp3_is_refused_and_not_retried(sandbox, monkeypatch, tmp_path):
    use_retries(sandbox, monkeypatch, 3)
    sid = completed(sandbox)
    sandbox.configure_media(framing="close", audio_format="mp3")
    op = RecordingToStorageOperator(
        task_id="store", recording_sid=sid, dst=f"{tmp_path}/", delete_after_upload=True
    )

    with pytest.raises(RecordingIncompleteError) as caught:
        op.execute(context={})

    assert caught.value.received == len(mp3_bytes(SECONDS))  # all of it arrived, but nothing proves it
    assert not caught.value.retryable
    assert "neither Content-Length nor chunked" in str(caught.value)
    assert sandbox.stats()["media_requests"] == 1  # another attempt could not prove it either
    assert files(tmp_path) == []
    assert exists(sid)


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_a_framed_mp3_is_stored(sandbox, tmp_path, framing):
    sid = completed(sandbox)
    sandbox.configure_media(framing=framing, audio_format="mp3")

    stored = RecordingHook(retry_policy=NO_RETRY).download_recording(sid, f"{tmp_path}/")

    assert (tmp_path / f"{sid}.mp3").read_bytes() == mp3_bytes(SECONDS)
    assert stored["content_type"] == "audio/mpeg"


def test_a_chunked_body_cut_before_its_last_chunk_is_incomplete_then_retried(sandbox, tmp_path):
    sid = completed(sandbox)
    sandbox.configure_media(framing="chunked")
    sandbox.inject_media("cut")

    with pytest.raises(TelnyxApiError) as caught:
        RecordingHook(retry_policy=NO_RETRY).download_recording(sid, f"{tmp_path}/")
    assert caught.value.failure == "connection"
    assert "incomplete" in str(caught.value)
    assert files(tmp_path) == []

    sandbox.inject_media("cut")
    RecordingHook(retry_policy=RETRIES).download_recording(sid, f"{tmp_path}/")
    assert (tmp_path / f"{sid}.wav").read_bytes() == WAV


# -- the retry budget of a long transfer -------------------------------------------------------------------


def test_a_transfer_longer_than_the_retry_budget_that_is_cut_still_gets_its_retry(sandbox, tmp_path):
    sid = completed(sandbox, seconds=1)
    whole = wav_bytes(1, 2)
    # Half of 32,044 bytes at 16,000 bytes/s: the cut attempt alone takes about 1 s, twice the budget.
    sandbox.configure_media(bytes_per_second=16000)
    sandbox.inject_media("cut")
    hook = RecordingHook(
        retry_policy=RetryPolicy(max_retries=1, max_wait=0.01, budget=0.5, initial_wait=0.01)
    )

    stored = hook.download_recording(sid, f"{tmp_path}/")

    assert (tmp_path / f"{sid}.wav").read_bytes() == whole
    assert stored["size"] == len(whole)
    assert sandbox.stats()["media_requests"] == 2


def test_failures_without_any_audio_still_spend_the_budget(sandbox, tmp_path):
    sid = completed(sandbox)
    sandbox.inject("GET /Recordings/{sid}", "503", count=50)
    hook = RecordingHook(
        retry_policy=RetryPolicy(max_retries=50, max_wait=0.05, budget=0.3, initial_wait=0.05)
    )

    with pytest.raises(TelnyxApiError) as caught:
        hook.download_recording(sid, f"{tmp_path}/")

    assert caught.value.status == 503
    assert sandbox.stats()["injections_pending"]  # gave up long before 50 tries
    assert files(tmp_path) == []


# -- partial objects and permissions -----------------------------------------------------------------------


DOWNLOAD_SCRIPT = """
import sys
from telnyx_provider.hooks.recording import RecordingHook
RecordingHook().download_recording(sys.argv[1], sys.argv[2])
"""


def test_a_download_killed_midway_leaves_a_partial_file_that_the_retry_reuses(sandbox, tmp_path):
    sid = completed(sandbox, seconds=30)
    whole = wav_bytes(30, 2, cap=30)  # ~940 kB
    sandbox.configure_media(bytes_per_second=200_000)  # ~5 s for ~940 kB
    command = [sys.executable, "-c", DOWNLOAD_SCRIPT, sid, f"{tmp_path}/"]
    partial = kill_midway(command, tmp_path, sid, at_least=256 * 1024)

    assert files(tmp_path) == [partial.name]  # what a killed attempt leaves: no cleanup ran
    assert 0 < partial.stat().st_size < len(whole)
    assert stat.S_IMODE(partial.stat().st_mode) == 0o600

    sandbox.configure_media()  # full speed for the retry
    stored = RecordingHook(retry_policy=NO_RETRY).download_recording(sid, f"{tmp_path}/")

    final = tmp_path / f"{sid}.wav"
    assert files(tmp_path) == [final.name]
    assert final.read_bytes() == whole
    assert stored["size"] == len(whole)
    assert stat.S_IMODE(final.stat().st_mode) == 0o600


def test_local_files_are_0600_whatever_the_umask_and_whatever_a_leftover_had(sandbox, tmp_path):
    sid = completed(sandbox)
    leftover = tmp_path / f".{sid}.wav.part"
    leftover.write_bytes(b"x" * 100_000)
    leftover.chmod(0o666)
    previous = os.umask(0)
    try:
        RecordingHook(retry_policy=NO_RETRY).download_recording(sid, f"{tmp_path}/")
        target = tmp_path / "named.wav"
        RecordingHook(retry_policy=NO_RETRY).download_recording(sid, target)
    finally:
        os.umask(previous)

    for path in (tmp_path / f"{sid}.wav", target):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_bytes() == WAV
    assert files(tmp_path) == sorted([f"{sid}.wav", "named.wav"])


def test_a_partial_file_another_download_is_writing_is_left_alone(sandbox, tmp_path):
    import fcntl

    sid = completed(sandbox)
    partial = tmp_path / f".{sid}.wav.part"
    partial.write_bytes(b"being written")
    with partial.open("rb+") as other_writer:
        fcntl.flock(other_writer, fcntl.LOCK_EX | fcntl.LOCK_NB)

        with pytest.raises(RecordingStorageError, match="Another download is writing"):
            RecordingHook(retry_policy=NO_RETRY).download_recording(sid, f"{tmp_path}/")

        assert partial.read_bytes() == b"being written"
        assert files(tmp_path) == [partial.name]


OBJECT_STORE_SCRIPT = """
import sys
from airflow.sdk.io import attach
from fsspec.implementations.dirfs import DirFileSystem
from fsspec.implementations.local import LocalFileSystem
from telnyx_provider.hooks.recording import RecordingHook
attach(protocol="s3", conn_id=sys.argv[4], fs=DirFileSystem(path=sys.argv[3], fs=LocalFileSystem()))
RecordingHook().download_recording(sys.argv[1], sys.argv[2], dest_conn_id=sys.argv[4])
"""


def test_an_object_store_upload_killed_midway_is_overwritten_by_the_retry(sandbox, tmp_path):
    """An object store reached through fsspec (a folder attached as ``s3``, so that two processes share it):
    the killed attempt's partial object is replaced, then moved into place."""
    from airflow.sdk.io import attach
    from fsspec.implementations.dirfs import DirFileSystem
    from fsspec.implementations.local import LocalFileSystem

    sid = completed(sandbox, seconds=30)
    sandbox.configure_media(bytes_per_second=200_000)
    folder = tmp_path / "bucket"
    folder.mkdir()
    dst = "s3://bucket/"
    conn_id = f"disk_store_{sid[:8]}"
    command = [sys.executable, "-c", OBJECT_STORE_SCRIPT, sid, dst, str(tmp_path), conn_id]
    partial = kill_midway(command, folder, sid, at_least=1)
    assert files(folder) == [partial.name]

    sandbox.configure_media()
    attach(protocol="s3", conn_id=conn_id, fs=DirFileSystem(path=str(tmp_path), fs=LocalFileSystem()))
    RecordingHook(retry_policy=NO_RETRY).download_recording(sid, dst, dest_conn_id=conn_id)

    assert files(folder) == [f"{sid}.wav"]
    assert (folder / f"{sid}.wav").read_bytes() == wav_bytes(30, 2, cap=30)


KILLED_AFTER_THE_MOVE = """
import os, signal, sys
from telnyx_provider.transfers.recording import RecordingToStorageOperator

real_replace = os.replace


def replace_then_die(source, target):  # the worker dies right after the move, before anything else
    real_replace(source, target)
    os.kill(os.getpid(), signal.SIGKILL)


os.replace = replace_then_die
RecordingToStorageOperator(
    task_id="store", recording_sid=sys.argv[1], dst=sys.argv[2], delete_after_upload=True
).execute(context={})
"""


def test_a_worker_killed_after_the_move_leaves_the_copy_and_the_recording_and_a_retry_says_what_to_do(
    sandbox, monkeypatch, tmp_path
):
    """SIGKILL between the move into place and the read-back: the copy is whole and private, nothing was
    deleted; a retry with overwrite=False stops and names overwrite=True, which then stores the same audio
    again, reads it back and deletes."""
    use_retries(sandbox, monkeypatch, 0)
    sid = completed(sandbox)
    worker = subprocess.run(
        [sys.executable, "-c", KILLED_AFTER_THE_MOVE, sid, f"{tmp_path}/"], env=dict(os.environ), timeout=60
    )
    assert worker.returncode == -signal.SIGKILL

    stored = tmp_path / f"{sid}.wav"
    assert files(tmp_path) == [stored.name]
    assert stored.read_bytes() == WAV
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert exists(sid)

    retry = RecordingToStorageOperator(
        task_id="store", recording_sid=sid, dst=f"{tmp_path}/", delete_after_upload=True
    )
    with pytest.raises(RecordingStorageError, match="overwrite=True"):
        retry.execute(context={})  # (into a folder: once the media's type has named the file)
    assert files(tmp_path) == [stored.name]
    assert exists(sid)

    retry.overwrite = True
    result = retry.execute(context={})

    assert result["size"] == len(WAV)
    assert stored.read_bytes() == WAV
    assert not exists(sid)
