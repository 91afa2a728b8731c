"""delete_after_upload against stores that lose, cut or refuse what they were given (review r-media).

The recording may be deleted on Telnyx only once the stored object, read back, has the size and SHA-256 of a
length-proven download. Each store here breaks that in a way real ones do; none may lead to the DELETE.
"""

from __future__ import annotations

import io

import pytest
from fsspec.implementations.memory import MemoryFileSystem

from telnyx_provider.errors import RecordingStorageError
from telnyx_provider.transfers.recording import RecordingToStorageOperator
from tests.transfers.adversarial_stores import TruncatingFileSystem
from tests.transfers.test_recording_to_storage import (
    AUDIO,
    MEDIA_URL,
    RECORDING_SID,
    RECORDING_URL,
    attached,
    recording_reply,
)


@pytest.fixture
def telnyx_api(telnyx_conn, requests_mock):
    """The recording and its media (as in test_recording_to_storage); returns the DELETE route."""
    requests_mock.get(RECORDING_URL, json=recording_reply())
    headers = {"Content-Type": "audio/wav", "Content-Length": str(len(AUDIO))}
    requests_mock.get(MEDIA_URL, body=io.BytesIO(AUDIO), headers=headers)
    return requests_mock.delete(RECORDING_URL, status_code=204)


class ReadBackRefusedFileSystem(MemoryFileSystem):
    """Writes succeed; reading a recording back is refused (a write-only role, a revoked key)."""

    def _open(self, path, mode="rb", **kwargs):
        if "r" in mode and self._strip_protocol(path).endswith(".wav"):
            raise PermissionError("reading is not allowed for this role")
        return super()._open(path, mode, **kwargs)


class VanishingFileSystem(MemoryFileSystem):
    """The move says it succeeded, but the object is not there when read (a lagging or failing replica)."""

    def mv(self, path1, path2, *args, **kwargs):
        result = super().mv(path1, path2, *args, **kwargs)
        self.store.pop(self._strip_protocol(path2), None)
        return result


def store_and_delete(fs: MemoryFileSystem) -> RecordingToStorageOperator:
    conn_id, bucket = attached(fs)
    return RecordingToStorageOperator(
        task_id="store",
        recording_sid=RECORDING_SID,
        dst=f"s3://{bucket}/calls/",
        dest_conn_id=conn_id,
        delete_after_upload=True,
    )


def test_a_store_that_silently_keeps_part_of_the_object_never_leads_to_the_delete(telnyx_api):
    with pytest.raises(RecordingStorageError, match="NOT deleted"):
        store_and_delete(TruncatingFileSystem()).execute(context={})

    assert telnyx_api.call_count == 0


@pytest.mark.parametrize(
    ("fs", "error"),
    [(ReadBackRefusedFileSystem(), PermissionError), (VanishingFileSystem(), FileNotFoundError)],
    ids=["read-back-refused", "object-vanished"],
)
def test_a_copy_that_cannot_be_read_back_is_not_proof_enough_to_delete(telnyx_api, fs, error):
    with pytest.raises(error):
        store_and_delete(fs).execute(context={})

    assert telnyx_api.call_count == 0
