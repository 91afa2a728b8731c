"""RecordingToStorageOperator over requests-mock: storing, verified delete, lineage, the link's parts."""

from __future__ import annotations

import hashlib
import io
import json
import uuid

import pytest
from fsspec.implementations.memory import MemoryFileSystem

from telnyx_provider.errors import RecordingStorageError, TelnyxValidationError
from telnyx_provider.lineage import RUN_FACET_NAME, dataset_name
from telnyx_provider.links import TelnyxRecordingLink, portal_recording_url, recording_sid_from_xcom
from telnyx_provider.operators.recording import StartCallRecordingOperator
from telnyx_provider.transfers.recording import RecordingToStorageOperator
from tests.conftest import ACCOUNT_SID, MOCK_BASE_URL

RECORDING_SID = "b08f0fa1-a32c-4218-b3b5-9cf78941ccac"
CALL_SID = "v3:KBnLO0ZK3DhKM5s7bE9VluaSmKsOchKht_fUYvxcp8ysbmzCCtpkmA"
RECORDING_URL = f"{MOCK_BASE_URL}/texml/Accounts/{ACCOUNT_SID}/Recordings/{RECORDING_SID}.json"
MEDIA_URL = "https://media.cdn.test/r.wav?X-Amz-Signature=SIGNATURE0123456789"
AUDIO = b"RIFF" + bytes(range(256)) * 100
PHONE_NUMBERS = ("+13125550001", "+13125550002")


def recording_reply() -> dict:
    return {
        "sid": RECORDING_SID,
        "call_sid": CALL_SID,
        "status": "completed",
        "duration": "5",
        "media_url": MEDIA_URL,
        "from": PHONE_NUMBERS[0],  # never to reach lineage
        "to": PHONE_NUMBERS[1],
    }


@pytest.fixture
def telnyx_api(telnyx_conn, requests_mock):
    requests_mock.get(RECORDING_URL, json=recording_reply())
    requests_mock.get(
        MEDIA_URL,
        body=io.BytesIO(AUDIO),
        headers={"Content-Type": "audio/wav", "Content-Length": str(len(AUDIO))},
    )
    return requests_mock.delete(RECORDING_URL, status_code=204)


class RotOnReadFileSystem(MemoryFileSystem):
    """A store that flips one byte of whatever is read back (bit rot): what a verified delete must catch."""

    def cat_file(self, path, start=None, end=None, **kwargs):  # pragma: no cover - not used by read_back
        raise NotImplementedError

    def _open(self, path, mode="rb", **kwargs):
        handle = super()._open(path, mode, **kwargs)
        if "r" not in mode:
            return handle
        data = bytearray(handle.read())
        data[len(data) // 2] ^= 0xFF
        return io.BytesIO(bytes(data))


def attached(fs: MemoryFileSystem) -> tuple[str, str]:
    from airflow.sdk.io import attach

    conn_id = f"store_{uuid.uuid4().hex[:8]}"
    attach(protocol="s3", conn_id=conn_id, fs=fs)
    return conn_id, f"bucket-{uuid.uuid4().hex[:8]}"


def test_stores_the_recording_and_returns_the_hooks_dict(telnyx_api, tmp_path):
    op = RecordingToStorageOperator(task_id="store", recording_sid=RECORDING_SID, dst=f"{tmp_path}/")

    result = op.execute(context={})

    assert set(result) == {"recording_sid", "call_sid", "path", "size", "sha256", "content_type", "duration"}
    assert result["path"] == f"file://{tmp_path}/{RECORDING_SID}.wav"
    assert (tmp_path / f"{RECORDING_SID}.wav").read_bytes() == AUDIO
    assert telnyx_api.call_count == 0  # not deleted unless asked


def test_delete_after_upload_deletes_only_after_the_copy_was_read_back(telnyx_api, requests_mock):
    conn_id, bucket = attached(MemoryFileSystem())
    op = RecordingToStorageOperator(
        task_id="store",
        recording_uri=f"/v2/texml/Accounts/{ACCOUNT_SID}/Recordings/{RECORDING_SID}.json",
        dst=f"s3://{bucket}/calls/",
        dest_conn_id=conn_id,
        delete_after_upload=True,
    )

    result = op.execute(context={})

    assert telnyx_api.call_count == 1
    methods = [request.method for request in requests_mock.request_history]
    assert methods == ["GET", "GET", "DELETE"]  # recording, media, then (verified) delete
    assert result["sha256"] == hashlib.sha256(AUDIO).hexdigest()


def test_a_copy_that_does_not_read_back_the_same_is_kept_and_the_recording_not_deleted(telnyx_api):
    conn_id, bucket = attached(RotOnReadFileSystem())
    op = RecordingToStorageOperator(
        task_id="store",
        recording_sid=RECORDING_SID,
        dst=f"s3://{bucket}/calls/",
        dest_conn_id=conn_id,
        delete_after_upload=True,
    )

    with pytest.raises(RecordingStorageError, match="NOT deleted"):
        op.execute(context={})

    assert telnyx_api.call_count == 0


def test_delete_after_upload_reads_back_through_an_object_storage_paths_own_connection(telnyx_api):
    from airflow.sdk import ObjectStoragePath

    conn_id, bucket = attached(RotOnReadFileSystem())
    op = RecordingToStorageOperator(
        task_id="store",
        recording_sid=RECORDING_SID,
        dst=ObjectStoragePath(f"s3://{bucket}/one.wav", conn_id=conn_id),
        delete_after_upload=True,
    )
    with pytest.raises(RecordingStorageError):
        op.execute(context={})
    assert telnyx_api.call_count == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"dst": "/tmp/x/"},  # neither sid nor uri
        {"recording_sid": RECORDING_SID, "dst": "  "},
        {"recording_sid": RECORDING_SID, "dst": None},
        {"recording_sid": RECORDING_SID, "dst": "/tmp/x/", "overwrite": "maybe"},
        {"recording_sid": RECORDING_SID, "dst": "/tmp/x/", "dest_conn_id": "a b"},
    ],
)
def test_bad_literals_are_refused_when_the_dag_is_parsed(kwargs):
    with pytest.raises(TelnyxValidationError):
        RecordingToStorageOperator(task_id="store", **kwargs)


def test_templated_values_are_checked_after_rendering_before_any_request(telnyx_conn, requests_mock):
    op = RecordingToStorageOperator(task_id="store", recording_sid="{{ params.sid }}", dst="{{ params.dst }}")
    op.render_template_fields({"params": {"sid": "a/b", "dst": "/tmp/out/"}})
    with pytest.raises(TelnyxValidationError, match="recording_sid"):
        op.execute(context={})
    assert requests_mock.call_count == 0


def test_lineage_names_the_object_with_its_size_and_the_recording_sid(telnyx_api):
    from openlineage.client.serde import Serde

    conn_id, bucket = attached(MemoryFileSystem())
    op = RecordingToStorageOperator(
        task_id="store", recording_sid=RECORDING_SID, dst=f"s3://{bucket}/calls/", dest_conn_id=conn_id
    )
    assert op.get_openlineage_facets_on_complete(None) is None  # nothing stored yet
    op.execute(context={})

    lineage = op.get_openlineage_facets_on_complete(None)

    (output,) = lineage.outputs
    assert (output.namespace, output.name) == (f"s3://{bucket}", f"calls/{RECORDING_SID}.wav")
    assert output.outputFacets["outputStatistics"].size == len(AUDIO)
    assert lineage.run_facets[RUN_FACET_NAME].recording_sid == RECORDING_SID
    event_json = Serde.to_json(output) + "".join(Serde.to_json(f) for f in lineage.run_facets.values())
    assert RECORDING_SID in event_json
    for number in PHONE_NUMBERS:
        assert number not in event_json
    assert '"from"' not in event_json


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("file:///data/calls/r.wav", ("file", "/data/calls/r.wav")),
        ("s3://bucket/calls/r.wav", ("s3://bucket", "calls/r.wav")),
        ("gs://bucket/r.wav", ("gs://bucket", "r.wav")),
        ("gcs://bucket/r.wav", ("gs://bucket", "r.wav")),
        (
            "abfs://container@account.dfs.core.windows.net/r.wav",
            ("abfs://account.dfs.core.windows.net", "/r.wav"),
        ),
    ],
)
def test_dataset_names_follow_openlineage(url, expected):
    assert dataset_name(url) == expected


def test_the_link_is_on_both_operators_and_points_at_the_recording():
    assert any(
        isinstance(link, TelnyxRecordingLink) for link in RecordingToStorageOperator.operator_extra_links
    )
    assert any(
        isinstance(link, TelnyxRecordingLink) for link in StartCallRecordingOperator.operator_extra_links
    )
    assert TelnyxRecordingLink().name == "Telnyx recording"
    assert portal_recording_url(RECORDING_SID) == (
        f"https://portal.telnyx.com/#/app/call-recordings?search={RECORDING_SID}"
    )
    assert portal_recording_url("a b/c").endswith("search=a%20b%2Fc")


@pytest.mark.parametrize(
    ("key_value", "return_value", "sid"),
    [
        ("r-key", {"sid": "r-other"}, "r-key"),
        (None, {"sid": "r-start"}, "r-start"),
        (None, {"recording_sid": "r-store", "path": "file:///x"}, "r-store"),
        (None, None, None),
        (None, "not a dict", None),
    ],
)
def test_the_link_reads_the_recording_sid_from_xcom(key_value, return_value, sid):
    assert recording_sid_from_xcom(key_value, return_value) == sid


def test_the_result_is_json_for_xcom_and_asset_extras(telnyx_api, tmp_path):
    result = RecordingToStorageOperator(task_id="s", recording_sid=RECORDING_SID, dst=f"{tmp_path}/").execute(
        {}
    )
    assert json.loads(json.dumps(result)) == result
