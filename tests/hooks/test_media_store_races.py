"""Two downloads of one destination at once, a killed worker, symlinks and modes (review r-media).

Two tasks may write the same ``dst`` at the same moment: a zombie try and its retry, or two DAG runs storing
one recording. Whatever the interleaving, an object at ``dst`` must be what the download that reports it
stored; a download that cannot make sure of that fails. The interleavings are forced with gates in the media
bodies (requests-mock; two threads), so they do not depend on timing.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import threading
import uuid
from typing import Any

import pytest
from fsspec.implementations.memory import MemoryFile, MemoryFileSystem
from urllib3.exceptions import ProtocolError

from telnyx_provider.errors import RecordingStorageError, TelnyxApiError
from telnyx_provider.hooks.recording import RecordingHook
from tests.hooks.test_recording_download import (
    AUDIO,
    GET_URL,
    MEDIA_URL,
    NO_RETRY,
    RECORDING_SID,
    recording,
)


class GatedBody(io.RawIOBase):
    """``data`` served until ``gate`` bytes; then ``reached`` is set and the body waits for ``release``,
    after which it goes on (``cut=False``) or breaks as a reset connection does (``cut=True``)."""

    def __init__(self, data: bytes, gate: int, *, cut: bool) -> None:
        self.data, self.gate, self.cut, self.offset = data, gate, cut, 0
        self.reached, self.release = threading.Event(), threading.Event()

    def readable(self) -> bool:
        return True

    def read1(self, size: int = -1) -> bytes:
        """As a socket's reply does: what is there, without waiting for more (urllib3 reads so)."""
        return self.read(size)

    def read(self, size: int = -1) -> bytes:
        if self.offset == self.gate and not self.release.is_set():
            self.reached.set()
            assert self.release.wait(30), "the test never released the body"
            if self.cut:
                raise ProtocolError("Connection broken: IncompleteRead", ConnectionResetError(104, "reset"))
        end = len(self.data) if size is None or size < 0 else self.offset + size
        if self.offset < self.gate <= end:
            end = self.gate
        piece, self.offset = self.data[self.offset : end], min(end, len(self.data))
        return piece


def reply(body: GatedBody) -> dict[str, Any]:
    headers = {"Content-Type": "audio/wav", "Content-Length": str(len(AUDIO))}
    return {"body": body, "headers": headers}


class Download(threading.Thread):
    """One ``download_recording`` in its own thread; its result or error kept."""

    def __init__(self, dst: str, conn_id: str | None, overwrite: bool) -> None:
        super().__init__(daemon=True)
        self.dst, self.conn_id, self.overwrite = dst, conn_id, overwrite
        self.result: dict[str, Any] | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            hook = RecordingHook(retry_policy=NO_RETRY)
            self.result = hook.download_recording(
                RECORDING_SID, self.dst, dest_conn_id=self.conn_id, overwrite=self.overwrite
            )
        except BaseException as error:  # kept for the test to judge
            self.error = error


def at_gate(body: GatedBody, download: Download) -> bool:
    """Wait until ``body`` is held at its gate (True) or its download has ended (False)."""
    while not body.reached.wait(0.05):
        if not download.is_alive():
            return body.reached.is_set()
    return True


def race(requests_mock, dst: str, conn_id: str | None, overwrite: bool, second_cut: bool):
    """A writes 512 kB and waits; B starts, writes 256 kB and waits; A finishes; then B finishes or is cut."""
    requests_mock.get(GET_URL, json=recording())
    first = GatedBody(AUDIO, 512 * 1024, cut=False)
    second = GatedBody(AUDIO, 256 * 1024, cut=second_cut)
    requests_mock.get(MEDIA_URL, [reply(first), reply(second)])
    a, b = Download(dst, conn_id, overwrite), Download(dst, conn_id, overwrite)
    a.start()
    assert at_gate(first, a), a.error
    b.start()
    at_gate(second, b)  # or B has ended (refused)
    first.release.set()
    a.join(30)
    second.release.set()
    b.join(30)
    assert not a.is_alive()
    assert not b.is_alive()
    return a, b


def check_outcome(a: Download, b: Download, stored: bytes | None, second_cut: bool) -> None:
    for download in (a, b):
        # A download that failed says why: cut, refused, or its partial object was taken from it.
        assert download.error is None or isinstance(download.error, TelnyxApiError | RecordingStorageError)
        if download.result is not None:  # whoever says it stored the recording stored exactly that
            assert stored is not None
            assert hashlib.sha256(stored).hexdigest() == download.result["sha256"]
            assert len(stored) == download.result["size"]
    if stored is not None:
        assert stored == AUDIO  # never a cut or mixed copy at dst
    if not second_cut:
        assert stored == AUDIO  # one of two whole downloads got it stored


class UploadOnCloseFileSystem(MemoryFileSystem):
    """A store like S3, GCS or Azure: an object being written is not there until its upload completes (when
    the file is closed, also by an error), and then it holds a copy of the bytes written."""

    def _open(self, path, mode="rb", **kwargs):
        if "w" not in mode:
            return super()._open(path, mode, **kwargs)
        return _Upload(self, self._strip_protocol(path))


class _Upload(io.BytesIO):
    def __init__(self, fs: MemoryFileSystem, path: str) -> None:
        super().__init__()
        self.fs, self.path = fs, path

    def close(self) -> None:
        if not self.closed:
            MemoryFile(self.fs, self.path, self.getvalue()).commit()  # the upload completes
        super().close()


@pytest.fixture(params=["writes-as-it-goes", "uploads-on-close"])
def object_store(request, memory_s3):
    """The in-memory store (an object shows while it is written), or one that uploads on close."""
    if request.param == "writes-as-it-goes":
        return memory_s3
    from airflow.sdk.io import attach

    conn_id = f"upload_{uuid.uuid4().hex[:8]}"
    fs = UploadOnCloseFileSystem(global_store=False, skip_instance_cache=True)
    attach(protocol="s3", conn_id=conn_id, fs=fs)
    return conn_id, fs, f"bucket-{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize("overwrite", [False, True], ids=["overwrite-false", "overwrite-true"])
@pytest.mark.parametrize("second_cut", [True, False], ids=["second-cut", "second-whole"])
def test_two_downloads_of_one_object_store_destination_at_once(
    telnyx_conn, requests_mock, object_store, overwrite, second_cut
):
    conn_id, fs, bucket = object_store
    key = f"/{bucket}/calls/{RECORDING_SID}.wav"

    a, b = race(requests_mock, f"s3://{bucket}/calls/", conn_id, overwrite, second_cut)

    stored = fs.cat_file(key) if fs.exists(key) else None
    check_outcome(a, b, stored, second_cut)
    assert [path.rsplit("/", 1)[-1] for path in fs.find(f"/{bucket}")] == (
        [] if stored is None else [f"{RECORDING_SID}.wav"]
    )  # no partial object left


@pytest.mark.parametrize("overwrite", [False, True], ids=["overwrite-false", "overwrite-true"])
@pytest.mark.parametrize("second_cut", [True, False], ids=["second-cut", "second-whole"])
def test_two_downloads_of_one_local_destination_at_once(
    telnyx_conn, requests_mock, tmp_path, overwrite, second_cut
):
    a, b = race(requests_mock, f"{tmp_path}/calls/", None, overwrite, second_cut)

    target = tmp_path / "calls" / f"{RECORDING_SID}.wav"
    stored = target.read_bytes() if target.exists() else None
    check_outcome(a, b, stored, second_cut=True)  # locally the second is refused while the first writes
    assert stored == AUDIO
    assert a.result is not None
    assert "Another download is writing" in str(b.error)
    assert sorted(path.name for path in target.parent.iterdir()) == [target.name]


# -- modes and symlinks -------------------------------------------------------------------------------------


@pytest.fixture
def umask_zero():
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def stored_locally(requests_mock, dst: str) -> dict[str, Any]:
    requests_mock.get(GET_URL, json=recording())
    requests_mock.get(MEDIA_URL, body=io.BytesIO(AUDIO), headers={"Content-Length": str(len(AUDIO))})
    return RecordingHook(retry_policy=NO_RETRY).download_recording(RECORDING_SID, dst)


def test_folders_created_on_the_way_are_the_owners_only_whatever_the_umask(
    telnyx_conn, requests_mock, tmp_path, umask_zero
):
    """With umask 0 they were 0777: anyone could list, plant or swap the recordings in them."""
    existing = tmp_path / "shared"
    existing.mkdir(mode=0o755)

    stored_locally(requests_mock, f"{existing}/2026/12/")

    for folder in (existing / "2026", existing / "2026" / "12"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    assert stat.S_IMODE(existing.stat().st_mode) == 0o755  # what existed is left as it was
    assert stat.S_IMODE((existing / "2026" / "12" / f"{RECORDING_SID}.wav").stat().st_mode) == 0o600


def test_a_destination_that_is_a_symlink_is_replaced_never_written_through(
    telnyx_conn, requests_mock, tmp_path
):
    victim = tmp_path / "elsewhere" / "victim.wav"
    victim.parent.mkdir()
    victim.write_bytes(b"not to be touched")
    dst = tmp_path / "calls" / "one.wav"
    dst.parent.mkdir()
    dst.symlink_to(victim)

    requests_mock.get(GET_URL, json=recording())
    requests_mock.get(MEDIA_URL, body=io.BytesIO(AUDIO), headers={"Content-Length": str(len(AUDIO))})
    with pytest.raises(RecordingStorageError, match="already exists"):
        RecordingHook(retry_policy=NO_RETRY).download_recording(RECORDING_SID, str(dst))
    assert requests_mock.call_count == 0  # refused before any request

    RecordingHook(retry_policy=NO_RETRY).download_recording(RECORDING_SID, str(dst), overwrite=True)

    assert victim.read_bytes() == b"not to be touched"
    assert not dst.is_symlink()  # the link itself was replaced, atomically
    assert dst.read_bytes() == AUDIO
    assert stat.S_IMODE(dst.stat().st_mode) == 0o600


def test_a_partial_file_planted_as_a_symlink_is_never_written_through(telnyx_conn, requests_mock, tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"not to be touched")
    (tmp_path / f".{RECORDING_SID}.wav.part").symlink_to(victim)

    with pytest.raises(OSError, match="symbolic links"):
        stored_locally(requests_mock, f"{tmp_path}/")

    assert victim.read_bytes() == b"not to be touched"
    assert not (tmp_path / f"{RECORDING_SID}.wav").exists()


def test_a_longer_leftover_of_another_recording_is_emptied_before_it_is_reused(
    telnyx_conn, requests_mock, tmp_path
):
    """dst names one file for whichever recording a run stores: a killed run's partial file, longer than
    this recording, must not leave its tail behind."""
    leftover = tmp_path / ".latest.wav.part"
    leftover.write_bytes(b"\x7f" * (len(AUDIO) * 2))

    result = stored_locally(requests_mock, f"{tmp_path}/latest.wav")

    assert (tmp_path / "latest.wav").read_bytes() == AUDIO
    assert result["size"] == len(AUDIO)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["latest.wav"]
