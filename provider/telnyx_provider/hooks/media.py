"""Download a recording's audio into any object store: streamed, hashed on the way, written atomically.

Behind :meth:`telnyx_provider.hooks.recording.RecordingHook.download_recording`. The destination is an
:class:`airflow.sdk.ObjectStoragePath` (``file://``, ``s3://``, ``gs://``... with the credentials of
``dest_conn_id``). The audio goes to a temporary object next to the destination and is moved into place only
once complete; a failure at any point removes it, so nothing is ever left at ``dst``.

A media link is a bearer capability to personal data: it never reaches a log line or a message here (the
recording SID and the link's host do). :func:`telnyx_provider.media_api.media_request` decides its headers.
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from pathlib import PurePath
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

import requests
from tenacity import Retrying

from telnyx_provider import media_api
from telnyx_provider.errors import (
    RecordingFailedError,
    RecordingNotReadyError,
    RecordingStorageError,
    TelnyxValidationError,
)
from telnyx_provider.models import Verdict, assess_recording
from telnyx_provider.params import require_identifier

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    from airflow.sdk import ObjectStoragePath

    from telnyx_provider.hooks.recording import RecordingHook

    #: Names an object below a folder: from the recording (as fetched) and the media's file extension.
    ObjectName = Callable[[Mapping[str, Any], str], str]

log = logging.getLogger(__name__)

#: Bytes read from the network (and written to the store) at a time: memory use does not grow with the file.
CHUNK_SIZE = 256 * 1024
#: Redirects followed by hand, so each hop's headers are decided again (no key to a foreign host).
MAX_REDIRECTS = 5
_LOCAL_PROTOCOLS = ("", "file", "local")


class _NoNetrc(requests.auth.AuthBase):
    """Given as ``auth``, keeps ``requests`` from adding credentials from ``~/.netrc`` to a media request."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        return request


_NO_NETRC = _NoNetrc()


def resolve_destination(dst: object, dest_conn_id: str | None) -> tuple[ObjectStoragePath, bool]:
    """The destination as an ``ObjectStoragePath``, and whether it is a folder (``dst`` ends with ``/``).

    A string or ``os.PathLike`` is a URL (``s3://bucket/key``) or a local path; ``dest_conn_id`` gives its
    credentials. An ``ObjectStoragePath`` is used as given (its own connection), as Airflow's
    ``FileTransferOperator`` does; as it drops a trailing ``/``, one naming an existing folder is a folder.
    """
    from airflow.sdk import ObjectStoragePath

    if isinstance(dst, ObjectStoragePath):
        return dst, dst.is_dir()
    if isinstance(dst, PurePath | os.PathLike):
        dst = os.fspath(dst)
    if not isinstance(dst, str) or not dst.strip() or dst != dst.strip():
        raise TelnyxValidationError(
            "dst", dst, "an ObjectStoragePath, a URL (file://, s3://, gs://...) or a local path"
        )
    is_folder = dst.endswith("/")
    if "://" not in dst:  # a local path: made absolute, as a file:// URL
        dst = "file://" + os.path.abspath(dst) + ("/" if is_folder else "")
    return ObjectStoragePath(dst, conn_id=dest_conn_id), is_folder


def path_url(path: ObjectStoragePath) -> str:
    """The object's URL without credentials: ``file:///abs/path``, ``s3://bucket/key``..."""
    protocol = path.protocol or "file"
    if protocol in _LOCAL_PROTOCOLS:
        return "file://" + str(path.path)
    return f"{protocol}://{path.path}"


def storage_conn_id(path: ObjectStoragePath) -> str | None:
    """The connection of an ``ObjectStoragePath`` (a property from Airflow 3.2, a storage option on 3.1)."""
    conn_id = getattr(path, "conn_id", None)
    if conn_id is None:
        conn_id = getattr(path, "storage_options", {}).get("conn_id")
    return conn_id if isinstance(conn_id, str) else None


def download_recording(
    hook: RecordingHook,
    recording_sid: str,
    dst: object,
    *,
    account_sid: str | None = None,
    dest_conn_id: str | None = None,
    overwrite: bool = False,
    object_name: ObjectName | None = None,
) -> dict[str, Any]:
    """Store a final recording's audio at ``dst``; see :meth:`RecordingHook.download_recording`."""
    require_identifier("recording_sid", recording_sid)
    if not isinstance(overwrite, bool):
        raise TelnyxValidationError("overwrite", overwrite, "True or False")
    target, is_folder = resolve_destination(dst, dest_conn_id)
    if object_name is not None and not is_folder:
        raise TelnyxValidationError("dst", dst, "a folder (ending with /) when object_name is given")
    if not is_folder:
        _refuse_existing(target, overwrite)  # before any request
    name = object_name or _default_name
    retrying = Retrying(**hook.retry_policy.tenacity_kwargs(f"download of recording {recording_sid}"))
    for attempt in retrying:
        with attempt:
            return _download_once(hook, recording_sid, target, is_folder, account_sid, overwrite, name)
    raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover


def _default_name(recording: Mapping[str, Any], extension: str) -> str:
    return f"{recording['sid']}.{extension}"


def _download_once(
    hook: RecordingHook,
    recording_sid: str,
    target: ObjectStoragePath,
    is_folder: bool,
    account_sid: str | None,
    overwrite: bool,
    name: ObjectName,
) -> dict[str, Any]:
    recording = _final_recording(hook, recording_sid, account_sid)
    request, response = _open_media(hook, recording_sid, recording)
    if response.status_code in (403, 404):
        # An expired pre-signed link answers 403 (sometimes 404): fetch the recording again, once.
        response.close()
        log.info(
            "The media link of recording %s on %s answered HTTP %s; fetching the recording for a fresh link.",
            recording_sid,
            request.host,
            response.status_code,
        )
        recording = _final_recording(hook, recording_sid, account_sid)
        request, response = _open_media(hook, recording_sid, recording)
    try:
        if response.status_code != 200:
            raise media_api.media_error(
                request, response.status_code, response.headers, _error_body(response)
            )
        content_type = (response.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if is_folder:
            extension = media_api.media_extension(content_type, request.url)
            target = target / name({**recording, "sid": recording_sid}, extension)
            _refuse_existing(target, overwrite)
        log.info("Storing recording %s from %s at %s.", recording_sid, request.host, path_url(target))
        size, sha256 = _write_atomically(response, request, target, overwrite)
    finally:
        response.close()
    log.info(
        "Stored recording %s at %s (%d bytes, sha256 %s).", recording_sid, path_url(target), size, sha256
    )
    return {
        "recording_sid": recording_sid,
        "call_sid": recording.get("call_sid"),
        "path": path_url(target),
        "size": size,
        "sha256": sha256,
        "content_type": content_type or None,
        "duration": recording.get("duration"),
    }


def _final_recording(hook: RecordingHook, recording_sid: str, account_sid: str | None) -> dict[str, Any]:
    """The recording, fetched now (a fresh link); refused unless final."""
    recording = hook.get_recording(recording_sid, account_sid=account_sid)
    assessment = assess_recording(recording)
    if assessment.verdict is Verdict.FAIL:
        raise RecordingFailedError(assessment.reason)
    if assessment.verdict is not Verdict.DONE or not recording.get("media_url"):
        raise RecordingNotReadyError(
            f"Recording {recording_sid} is not final (status {recording.get('status')!r}, duration "
            f"{recording.get('duration')!r}{', no media link' if not recording.get('media_url') else ''}): "
            "there is no audio to store yet, so nothing was written. Wait for it to complete first "
            "(RecordingCompletedSensor, or wait_for_completion=True)."
        )
    return recording


def _open_media(
    hook: RecordingHook, recording_sid: str, recording: dict[str, Any]
) -> tuple[media_api.MediaRequest, requests.Response]:
    """GET the media (headers only so far), following redirects by hand so each hop gets its own headers."""
    config = hook.config
    url: object = recording.get("media_url")
    for _ in range(MAX_REDIRECTS + 1):
        request = media_api.media_request(
            recording_sid, url, base_url=config.base_url, api_key=config.api_key
        )
        own = "Authorization" in request.headers
        try:
            response = hook.get_conn().get(
                request.url,
                headers=request.headers,
                stream=True,
                timeout=(config.connect_timeout, config.read_timeout),
                verify=config.verify if own else True,
                allow_redirects=False,
                auth=_NO_NETRC,
            )
        except requests.exceptions.SSLError as error:
            failure, detail = "tls", _describe(error, request)
        except requests.ConnectTimeout as error:
            failure, detail = "connect", _describe(error, request)
        except requests.ReadTimeout as error:
            failure, detail = "timeout", _describe(error, request)
        except requests.RequestException as error:
            failure, detail = "connection", _describe(error, request)
        else:
            if response.is_redirect and response.headers.get("Location"):
                url = urljoin(request.url, response.headers["Location"])
                response.close()
                continue
            return request, response
        # Out of the except block: the requests error (holding the link) is neither cause nor context.
        raise media_api.media_failure(request, failure, detail) from None
    raise media_api.media_failure(request, "connection", f"more than {MAX_REDIRECTS} redirects")


def _write_atomically(
    response: requests.Response, request: media_api.MediaRequest, target: ObjectStoragePath, overwrite: bool
) -> tuple[int, str]:
    """Stream the body to a temporary object beside ``target``, then move it there; remove it on failure."""
    if (target.protocol or "file") in _LOCAL_PROTOCOLS:
        target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.parent / f".{target.name}.{uuid.uuid4().hex[:12]}.part"
    digest = hashlib.sha256()
    size = 0
    try:
        with temporary.open("wb") as out:
            for chunk in _chunks(response, request):
                out.write(chunk)
                digest.update(chunk)
                size += len(chunk)
        expected = response.headers.get("Content-Length")
        encoded = response.headers.get("Content-Encoding", "identity").lower() != "identity"
        if expected is not None and expected.isdigit() and not encoded and int(expected) != size:
            raise media_api.media_failure(
                request, "connection", f"the transfer ended after {size} of {expected} bytes"
            )
        _refuse_existing(target, overwrite)  # someone else may have stored it meanwhile
        temporary.fs.mv(temporary.path, target.path)
    except BaseException:
        _remove_quietly(temporary)
        raise
    return size, digest.hexdigest()


def _chunks(response: requests.Response, request: media_api.MediaRequest) -> Iterator[bytes]:
    try:
        for chunk in response.iter_content(chunk_size=CHUNK_SIZE):
            if chunk:
                yield chunk
    except requests.exceptions.ReadTimeout as error:
        failure, detail = "timeout", _describe(error, request)
    except (requests.RequestException, OSError) as error:
        failure, detail = "connection", f"the transfer was cut: {_describe(error, request)}"
    else:
        return
    raise media_api.media_failure(request, failure, detail) from None


def _describe(error: BaseException, request: media_api.MediaRequest) -> str:
    """The transport failure in a few words, the link cut out *before* shortening (no partial link left)."""
    text = " ".join(media_api.redact_link(str(error), request.url).split())
    return f"{type(error).__name__}: {text[:200]}" if text else type(error).__name__


def _error_body(response: requests.Response, limit: int = 4096) -> bytes:
    """The start of an error reply's body (enough for Telnyx's error JSON)."""
    try:
        return response.raw.read(limit, decode_content=True) or b""
    except Exception:  # the body of an error is only quoted: losing it must not hide the status
        return b""


def _refuse_existing(target: ObjectStoragePath, overwrite: bool) -> None:
    if not overwrite and target.exists():
        raise RecordingStorageError(
            f"{path_url(target)} already exists; pass overwrite=True to replace it. Nothing was written."
        )


def _remove_quietly(path: ObjectStoragePath) -> None:
    try:
        if path.exists():
            path.fs.rm_file(path.path)
    except Exception:  # keep the original failure; say what may be left behind
        log.warning("Could not remove the partial download %s.", path_url(path), exc_info=True)


def read_back(path: str, conn_id: str | None) -> tuple[int, str]:
    """Read a stored object back: its size in bytes and SHA-256 (hex), streamed."""
    target, _ = resolve_destination(path, conn_id)
    digest = hashlib.sha256()
    size = 0
    with target.open("rb") as stored:
        while chunk := stored.read(CHUNK_SIZE):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()
