"""Download a recording's audio into any object store: streamed, hashed, proven whole, stored atomically.

Behind :meth:`telnyx_provider.hooks.recording.RecordingHook.download_recording`. The destination is an
``airflow.sdk.ObjectStoragePath`` (``file://``, ``s3://``, ``gs://``... with the credentials of
``dest_conn_id``). The audio goes to a partial object beside the destination (:mod:`.media_store`) and is
moved into place only once its length is proven (:mod:`telnyx_provider.media_length`); a failure removes it,
so nothing is ever left at ``dst``.

A media link is a bearer capability to personal data: it never reaches a log line or a message here (the
recording SID and the link's host do). :mod:`telnyx_provider.media_api` decides each hop's headers: the API
key goes only to the API's own origin, on the URL ``requests`` actually prepared; redirects are followed here,
one hop at a time, never by ``requests`` (which could carry headers along).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
from tenacity import Retrying, retry_if_exception, stop_after_attempt, stop_any
from tenacity.stop import stop_base

from telnyx_provider import media_api, media_length
from telnyx_provider._compat import mask_secret
from telnyx_provider.errors import (
    RecordingFailedError,
    RecordingIncompleteError,
    RecordingNotReadyError,
    TelnyxValidationError,
)
from telnyx_provider.hooks.media_body import MediaBody, describe
from telnyx_provider.hooks.media_store import (
    CHUNK_SIZE,
    path_url,
    read_back,
    refuse_existing,
    resolve_destination,
    staged,
    storage_conn_id,
)
from telnyx_provider.models import Verdict, assess_recording
from telnyx_provider.params import require_identifier
from telnyx_provider.retry import is_retryable

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    from airflow.sdk import ObjectStoragePath
    from tenacity import RetryCallState

    from telnyx_provider.hooks.recording import RecordingHook

    #: Names an object below a folder: from the recording (as fetched) and the media's file extension.
    ObjectName = Callable[[Mapping[str, Any], str], str]

__all__ = [
    "CHUNK_SIZE",
    "MAX_REDIRECTS",
    "download_recording",
    "path_url",
    "read_back",
    "resolve_destination",
    "storage_conn_id",
]

log = logging.getLogger(__name__)
#: urllib3's logger of requests (it logs each request's target, query included, at DEBUG).
_TRANSPORT_LOG = logging.getLogger("urllib3.connectionpool")

#: Redirects followed by hand, so each hop's headers are decided again (no key to a foreign host).
MAX_REDIRECTS = 5


class _NoNetrc(requests.auth.AuthBase):
    """Given as ``auth``, keeps ``requests`` from adding credentials from ``~/.netrc`` to a media request."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        return request


_NO_NETRC = _NoNetrc()


class DownloadBudget(stop_base):
    """The time budget of a download's retries: time spent failing and waiting, not receiving audio.

    A request's budget (``retry_budget``) bounds how long it keeps retrying; a download's body may take
    longer than that and still be worth a retry when it is cut. So the time each attempt spends receiving
    the body is left out: every attempt starts with what the earlier ones left of the budget for failures
    and waits, whatever their transfers took. The number of retries stays capped by ``max_retries``.

    :param budget: seconds of failures and waits after which no retry is made.
    :param clock: a monotonic clock (injectable for tests).
    """

    def __init__(self, budget: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.budget = budget
        self._clock = clock
        self._started = clock()
        self._receiving = 0.0

    @contextlib.contextmanager
    def receiving(self) -> Iterator[None]:
        """Time spent inside is not spent from the budget (however the block ends)."""
        began = self._clock()
        try:
            yield
        finally:
            self._receiving += self._clock() - began

    def spent(self) -> float:
        """Seconds spent from the budget so far."""
        return self._clock() - self._started - self._receiving

    def __call__(self, retry_state: RetryCallState) -> bool:
        """tenacity's stop test: whether the next retry would end past the budget."""
        return self.spent() + (retry_state.upcoming_sleep or 0.0) >= self.budget


def _retryable(error: BaseException) -> bool:
    return is_retryable(error) or (isinstance(error, RecordingIncompleteError) and error.retryable)


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
    """Store a final recording's audio at ``dst``.

    See :meth:`~telnyx_provider.hooks.recording.RecordingHook.download_recording`.
    """
    require_identifier("recording_sid", recording_sid)
    if not isinstance(overwrite, bool):
        raise TelnyxValidationError("overwrite", overwrite, "True or False")
    target, is_folder = resolve_destination(dst, dest_conn_id)
    if object_name is not None and not is_folder:
        raise TelnyxValidationError("dst", dst, "a folder (ending with /) when object_name is given")
    if not is_folder:
        refuse_existing(target, overwrite)  # before any request
    name = object_name or _default_name
    policy = hook.retry_policy
    budget = DownloadBudget(policy.budget)
    retrying = Retrying(
        **{
            **policy.tenacity_kwargs(f"download of recording {recording_sid}"),
            "retry": retry_if_exception(_retryable),
            "stop": stop_any(stop_after_attempt(policy.max_retries + 1), budget),
        }
    )
    for attempt in retrying:
        with attempt:
            return _download_once(
                hook, recording_sid, target, is_folder, account_sid, overwrite, name, budget
            )
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
    budget: DownloadBudget,
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
            refuse_existing(target, overwrite)
        log.info("Storing recording %s from %s at %s.", recording_sid, request.host, path_url(target))
        size, sha256, proof = _store(response, request, target, overwrite, budget, hook.config.read_timeout)
    finally:
        response.close()
    log.info(
        "Stored recording %s at %s (%d bytes, sha256 %s; whole by its %s).",
        recording_sid,
        path_url(target),
        size,
        sha256,
        proof,
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
    """The recording, fetched now (a fresh link); refused unless final.

    Fetched once: the download's own loop retries it (a retry loop inside would multiply the attempts).
    """
    once = hook.retry_policy.replace(max_retries=0)
    recording = hook.get_recording(recording_sid, account_sid=account_sid, retry_policy=once)
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
    request = media_api.media_request(
        recording_sid, recording.get("media_url"), base_url=config.base_url, api_key=config.api_key
    )
    for _ in range(MAX_REDIRECTS + 1):
        request, response = _send(hook, request)
        location = response.headers.get("Location")
        if not response.is_redirect or location is None:
            return request, response
        response.close()
        request = media_api.redirect_request(
            request, location, base_url=config.base_url, api_key=config.api_key
        )
    raise media_api.media_failure(request, "connection", f"more than {MAX_REDIRECTS} redirects")


def _send(
    hook: RecordingHook, request: media_api.MediaRequest
) -> tuple[media_api.MediaRequest, requests.Response]:
    """Send one hop, and only that hop (redirects are ours to follow); the request is returned with the
    URL as sent (what transport errors quote, to be redacted too).

    Prepared first, so that the key decision is checked on the URL ``requests`` connects to.
    """
    config = hook.config
    session = hook.get_conn()
    try:
        prepared = session.prepare_request(
            requests.Request("GET", request.url, headers=request.headers, auth=_NO_NETRC)
        )
    except (requests.RequestException, ValueError):
        prepared = None  # raised below, out of the except block: the error quotes the link
    if prepared is None:
        raise media_api.refused(request.recording_sid, f"the media link to {request.host} cannot be prepared")
    media_api.check_prepared(request, prepared.url)
    url = str(prepared.url)
    request = dataclasses.replace(request, sent_url=url)
    _mask_for_transport_logs(request)
    # As Session.request does: the environment's proxies and CA bundle (never ~/.netrc: auth is set).
    settings = session.merge_environment_settings(
        url, {}, True, config.verify if request.carries_key else True, None
    )
    try:
        return request, session.send(
            prepared,
            timeout=(config.connect_timeout, config.read_timeout),
            allow_redirects=False,
            **settings,
        )
    except requests.exceptions.SSLError as error:
        failure, detail = "tls", describe(error, request)
    except requests.ConnectTimeout as error:
        failure, detail = "connect", describe(error, request)
    except requests.ReadTimeout as error:
        failure, detail = "timeout", describe(error, request)
    except requests.RequestException as error:
        failure, detail = "connection", describe(error, request)
    except ValueError:
        # Even with allow_redirects=False, requests reads a redirect's Location (to offer the next request,
        # never sent); one it cannot decode or parse raises here, holding the target (a UnicodeDecodeError
        # keeps all its bytes): refused below, out of the except block, so it is not our error's context.
        failure, detail = "refused", ""
    if failure == "refused":
        raise media_api.refused(
            request.recording_sid, f"a redirect from {request.host} was refused: its Location cannot be read"
        )
    # Out of the except block: the requests error (holding the link) is neither cause nor context.
    raise media_api.media_failure(request, failure, detail)


def _mask_for_transport_logs(request: media_api.MediaRequest) -> None:
    """Give the link's query (a pre-signed link's signature) to Airflow's masker when urllib3 would log it.

    urllib3 logs every request's target, query included, at DEBUG. The masker keeps each pattern for the
    rest of the task (an archive downloads thousands of links), so only when that logging is on.
    """
    if not _TRANSPORT_LOG.isEnabledFor(logging.DEBUG):
        return
    for query in {urlsplit(link).query for link in request.links}:
        if query:
            mask_secret(query)


def _store(
    response: requests.Response,
    request: media_api.MediaRequest,
    target: ObjectStoragePath,
    overwrite: bool,
    budget: DownloadBudget,
    window: float,
) -> tuple[int, str, str]:
    """Stream the body into ``target``'s partial object; move it into place only once proven whole.

    ``window``: seconds of reading over which the transfer rate is judged (the read timeout).
    """
    frame = media_length.framing(response.headers)
    try:
        decoder = media_length.Decoder(response.headers)
    except media_length.Unproven as unproven:
        raise RecordingIncompleteError(
            request.recording_sid, 0, unproven.missing, retryable=unproven.retryable
        ) from None
    body = MediaBody(response, request, window, decoder)
    with staged(target, overwrite) as out, budget.receiving():
        for chunk in body.chunks():
            out.write(chunk)
        try:
            proof = media_length.prove_complete(
                frame, body.wire, body.size, body.head, coding_ended=decoder.ended
            )
        except media_length.Unproven as unproven:
            raise RecordingIncompleteError(
                request.recording_sid, body.size, unproven.missing, retryable=unproven.retryable
            ) from None
    return body.size, body.digest.hexdigest(), proof


def _error_body(response: requests.Response, limit: int = 4096) -> bytes:
    """The start of an error reply's body (enough for Telnyx's error JSON)."""
    try:
        return response.raw.read(limit, decode_content=True) or b""
    except Exception:  # the body of an error is only quoted: losing it must not hide the status
        return b""
