"""RecordingHook: the Telnyx connection and the TeXML recording endpoints over ``requests``.

The hook only moves bytes: :mod:`telnyx_provider.api` builds each request and reads each reply, and
:mod:`telnyx_provider.retry` decides what is retried, so the async client behaves the same.
"""

from __future__ import annotations

import logging
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

import requests
from airflow.sdk import BaseHook
from tenacity import Retrying
from urllib3.exceptions import NewConnectionError

from telnyx_provider import api
from telnyx_provider.connection import TelnyxConnectionConfig, config_from_connection
from telnyx_provider.errors import TelnyxApiError, transport_detail
from telnyx_provider.exact_start import exact_start_for
from telnyx_provider.hooks.recording_start import SNAPSHOT_MAX_PAGES, RecordingStart
from telnyx_provider.pages import PageGuard
from telnyx_provider.params import StartRecordingParams, require_positive_number
from telnyx_provider.retry import RetryPolicy

if TYPE_CHECKING:
    import os
    from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
    from datetime import date, datetime

    from airflow.sdk import ObjectStoragePath

    from telnyx_provider.hooks.recording_start import StartJournal

log = logging.getLogger(__name__)
T = TypeVar("T")
#: Recordings asked for per page of a call's list (a call rarely has more than a few).
CALL_PAGE_SIZE = 100


class RecordingHook(BaseHook):
    """Talk to Telnyx's TeXML recording API with the credentials of a ``telnyx`` connection.

    Connection: password = API key (sent as ``Authorization: Bearer``), login = the account SID used
    when a method is not given one, host = base URL (default ``https://api.telnyx.com/v2``).

    Retries follow the connection's extra (``max_retries``, ``retry_max_wait``, ``retry_budget``); the
    arguments below override it for this hook (an operator passes its own).

    :param telnyx_conn_id: the Airflow connection to use.
    :param retry_policy: a whole retry policy replacing the connection's settings.
    :param max_retries: retries after the first attempt of a request (0: none).
    :param retry_max_wait: cap of one backoff wait, in seconds.
    :param retry_budget: seconds a request may take in total, retries and waits included.
    :param request_timeout: seconds to connect and to wait for a reply, replacing the connection's
        ``connect_timeout`` and ``timeout`` (for requests that must end quickly, such as a stop on kill).
    :param adoption_wait: seconds a start whose reply was lost keeps looking for its own recording before
        it gives up on it (default: the connection extra ``adoption_wait``, else 5).
    """

    conn_name_attr = "telnyx_conn_id"
    default_conn_name = "telnyx_default"
    conn_type = "telnyx"
    hook_name = "Telnyx"

    def __init__(
        self,
        telnyx_conn_id: str = default_conn_name,
        *,
        retry_policy: RetryPolicy | None = None,
        max_retries: int | None = None,
        retry_max_wait: float | None = None,
        retry_budget: float | None = None,
        request_timeout: float | None = None,
        adoption_wait: float | None = None,
    ) -> None:
        super().__init__()
        self.telnyx_conn_id = telnyx_conn_id
        self.request_timeout = (
            None if request_timeout is None else require_positive_number("request_timeout", request_timeout)
        )
        self._adoption_wait = (
            None if adoption_wait is None else require_positive_number("adoption_wait", adoption_wait)
        )
        self._retry_policy = retry_policy
        self._retry_overrides = {
            "max_retries": max_retries,
            "max_wait": retry_max_wait,
            "budget": retry_budget,
        }
        RetryPolicy().replace(**self._retry_overrides)  # refuse bad values now, before any request

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The connection form's labels (Airflow < 3.2 reads this; 3.2+ reads the provider info)."""
        from telnyx_provider.get_provider_info import UI_FIELD_BEHAVIOUR

        return UI_FIELD_BEHAVIOUR

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Extra fields of the connection form on Airflow < 3.2 (3.2+ reads ``conn-fields``).

        Needs wtforms and flask-appbuilder, which Airflow 3.1 has only with the FAB provider installed.
        """
        from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
        from wtforms import IntegerField, StringField

        from telnyx_provider.get_provider_info import CONN_FIELDS

        def field(name: str) -> Any:
            spec = CONN_FIELDS[name]
            kind = IntegerField if "integer" in spec["schema"]["type"] else StringField
            return kind(spec["label"], widget=BS3TextFieldWidget(), default=spec["schema"].get("default"))

        return {name: field(name) for name in CONN_FIELDS}

    @cached_property
    def config(self) -> TelnyxConnectionConfig:
        """The connection's settings; reading them registers the API key with the secret masker."""
        return config_from_connection(self.get_connection(self.telnyx_conn_id))

    @cached_property
    def retry_policy(self) -> RetryPolicy:
        """The retry policy: the one given to the hook (else the connection's), with the hook's overrides."""
        base = self._retry_policy or self.config.retry_policy()
        return base.replace(**self._retry_overrides)

    @property
    def adoption_wait(self) -> float:
        """Seconds a start whose reply was lost looks for its recording: the hook's, else the connection's."""
        return self._adoption_wait if self._adoption_wait is not None else self.config.adoption_wait

    def get_conn(self) -> requests.Session:
        """The hook's one ``requests.Session`` (connection pooling, TLS verification on)."""
        return self._session

    @cached_property
    def _session(self) -> requests.Session:
        self.config.ssl_context()  # refuses a missing or unreadable CA bundle before any request
        session = requests.Session()
        session.verify = self.config.verify
        return session

    def close(self) -> None:
        """Close the session's pooled connections."""
        if "_session" in self.__dict__:
            self._session.close()
            del self.__dict__["_session"]

    # -- the endpoints ------------------------------------------------------------------------------

    def start_call_recording(
        self,
        call_sid: str,
        *,
        account_sid: str | None = None,
        play_beep: bool | None = None,
        recording_status_callback: str | None = None,
        recording_status_callback_event: str | list[str] | None = None,
        recording_status_callback_method: str | None = None,
        recording_channels: str | None = None,
        recording_track: str | None = None,
        send_recording_url: bool | None = None,
        snapshot: Collection[str] | None = None,
        exact_start: bool | None = None,
        journal: StartJournal | None = None,
        start_tokens: Sequence[str] = (),
    ) -> dict[str, Any]:
        """Start recording a live call; returns the new recording.

        Parameters left as ``None`` are not sent (the API applies its defaults). The start is not
        idempotent, so it is never repeated blindly; a recording is adopted only on evidence (README,
        *Exactly one recording per start*):

        - **exact mode** (the status callback goes to the receiver, ``.../telnyx/recording-status``):
          each attempt carries a token of its own in the callback URL and subscribes to ``in-progress``; after
          a lost reply, the recording a signed callback with the token named is adopted; none within
          ``adoption_wait`` seconds: the start is sent again with a new token, and a late recording of the
          earlier attempt is stopped as superseded;
        - **default mode**: the call's recording SIDs are read first (``snapshot``); after a lost reply a
          ``both``-track start adopts the sole new recording matching its channels; a one-track start, or
          several matches, raise :class:`~telnyx_provider.errors.AmbiguousStartError`; nothing new raises
          :class:`~telnyx_provider.errors.UncertainStartError`. The start is never sent again after a failure
          that may have started a recording.

        After a timeout (or a 504) the service may still carry the start out: it is never sent again, the
        call is watched until the retry budget is spent.

        :param snapshot: the SIDs of the call's recordings before this start (default mode; read here when
            ``None``).
        :param exact_start: ``None``: exact when the status callback goes to the receiver; ``True``: required
            (a callback URL elsewhere is refused); ``False``: default mode.
        :param journal: told of each attempt before it is sent and of how it ended (the start operator keeps
            it in Airflow's task state store).
        :param start_tokens: tokens earlier attempts of the same start sent (a task retry's).
        """
        params = StartRecordingParams.from_arguments(
            play_beep=play_beep,
            recording_status_callback=recording_status_callback,
            recording_status_callback_event=recording_status_callback_event,
            recording_status_callback_method=recording_status_callback_method,
            recording_channels=recording_channels,
            recording_track=recording_track,
            send_recording_url=send_recording_url,
        )
        exact = exact_start_for(params, exact_start, self.config.receiver_url)
        account = self.config.resolve_account_sid(account_sid)
        if exact is None and snapshot is None:
            snapshot = self.call_recording_sids(call_sid, account_sid=account)
        start = RecordingStart(
            self,
            call_sid,
            account,
            params,
            snapshot,
            adoption_wait=self.adoption_wait,
            exact=exact,
            journal=journal,
            earlier_tokens=start_tokens,
        )
        return start.run()

    def call_recording_sids(self, call_sid: str, *, account_sid: str | None = None) -> list[str]:
        """The SIDs of every recording the call has now (every page): a start's snapshot.

        At most ``SNAPSHOT_MAX_PAGES`` (100, in ``telnyx_provider.hooks.recording_start``) pages are read: a
        call whose list runs past them (or never ends) fails the start before it is sent.
        """
        return [
            str(recording["sid"])
            for recording in self.list_call_recordings(
                call_sid, account_sid=account_sid, max_pages=SNAPSHOT_MAX_PAGES
            )
            if "sid" in recording
        ]

    def get_recording(
        self, recording_sid: str, *, account_sid: str | None = None, retry_policy: RetryPolicy | None = None
    ) -> dict[str, Any]:
        """Fetch one recording (``GET .../Recordings/{recording_sid}.json``).

        :param retry_policy: retries of this request (default: the hook's).
        """
        request = api.get_recording(self.config.resolve_account_sid(account_sid), recording_sid)
        return self._call(request, api.parse_recording, retry_policy)

    def list_call_recordings(
        self,
        call_sid: str,
        *,
        account_sid: str | None = None,
        retry_policy: RetryPolicy | None = None,
        max_pages: int | None = None,
    ) -> list[dict[str, Any]]:
        """Every recording of one call, page after page.

        A page that repeats the one before it (the same page number or the same recordings) ends the
        listing with a :class:`~telnyx_provider.errors.TelnyxApiError` rather than another request.

        :param retry_policy: retries of each page (default: the hook's).
        :param max_pages: the most pages to read (``None``: no bound); a list that runs past them is an
            error saying so.
        """
        account = self.config.resolve_account_sid(account_sid)
        guard = PageGuard(
            "recordings",
            max_pages=max_pages,
            bound_reason=f"max_pages={max_pages}; a start's snapshot of its call reads at most "
            f"SNAPSHOT_MAX_PAGES={SNAPSHOT_MAX_PAGES} pages",
        )
        recordings: list[dict[str, Any]] = []
        page_number = 0
        while True:
            request = api.list_call_recordings(account, call_sid, page=page_number, page_size=CALL_PAGE_SIZE)
            page: dict[str, Any] = self._call(request, api.parse_recording_page, retry_policy)
            guard.check(request, page)
            recordings.extend(page["recordings"])
            if not guard.has_next(request, page):
                return recordings
            page_number += 1

    def update_call_recording(
        self, call_sid: str, recording_sid: str, status: str, *, account_sid: str | None = None
    ) -> dict[str, Any]:
        """Pause (``paused``), resume (``in-progress``) or stop (``stopped``) a recording."""
        request = api.update_call_recording(
            self.config.resolve_account_sid(account_sid), call_sid, recording_sid, status
        )
        return self._call(request, api.parse_recording)

    def stop_call_recording(
        self, call_sid: str, recording_sid: str, *, account_sid: str | None = None
    ) -> dict[str, Any]:
        """Stop a recording (``Status=stopped``)."""
        return self.update_call_recording(call_sid, recording_sid, "stopped", account_sid=account_sid)

    def delete_recording(self, recording_sid: str, *, account_sid: str | None = None) -> None:
        """Delete a recording.

        A 404 that answers a retry, after an attempt that got no usable reply (reset, 5xx, timeout), means the
        earlier attempt deleted it: that is success, logged as such. A 404 to the first attempt is an error.
        """
        request = api.delete_recording(self.config.resolve_account_sid(account_sid), recording_sid)
        retried = False
        for attempt in self._attempts(request):
            with attempt:
                try:
                    self._send(request, api.parse_reply)
                    return
                except TelnyxApiError as error:
                    if error.status == 404 and retried:
                        log.warning(
                            "Recording %s is gone (HTTP 404 on a retry): the earlier attempt, whose reply "
                            "was lost, deleted it.",
                            recording_sid,
                        )
                        return
                    retried = True
                    raise

    def iter_recordings(
        self,
        *,
        account_sid: str | None = None,
        page_size: int = 50,
        date_created_after: datetime | date | str | None = None,
        date_created_before: datetime | date | str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every recording of the account, page by page (streamed: each page as it is read).

        A page that repeats the one before it ends the iteration with a
        :class:`~telnyx_provider.errors.TelnyxApiError` before any of its recordings is yielded.

        :param date_created_after: only recordings created at or after this moment (a timezone-aware
            datetime, a date or an ISO 8601 string), sent as the ``DateCreated>=`` filter and checked
            again on each recording.
        :param date_created_before: only recordings created strictly before this moment, sent as the
            ``DateCreated<=`` filter and checked again (strictly) on each recording.
        """
        account = self.config.resolve_account_sid(account_sid)
        since = None if date_created_after is None else api.created_since(date_created_after)
        before = None if date_created_before is None else api.created_before(date_created_before)
        guard = PageGuard("recordings")
        page_number = 0
        while True:
            request = api.list_recordings(
                account,
                page=page_number,
                page_size=page_size,
                date_created_after=date_created_after,
                date_created_before=date_created_before,
            )
            page: dict[str, Any] = self._call(request, api.parse_recording_page)
            guard.check(request, page)
            yield from (
                item
                for item in page["recordings"]
                if (since is None or since(item)) and (before is None or before(item))
            )
            if not guard.has_next(request, page):
                return
            page_number += 1

    def test_connection(self) -> tuple[bool, str]:
        """Check the key and account with one cheap authenticated call (a one-item page of recordings)."""
        try:
            account = self.config.resolve_account_sid(None)
            self._call(api.list_recordings(account, page_size=1), api.parse_recording_page)
        except Exception as error:  # the UI shows the message; never re-raise from a connection test
            return False, str(error)
        return True, f"Connected to Telnyx at {self.config.base_url} (account {account})."

    def download_recording(
        self,
        recording_sid: str,
        dst: str | os.PathLike[str] | ObjectStoragePath,
        *,
        account_sid: str | None = None,
        dest_conn_id: str | None = None,
        overwrite: bool = False,
        object_name: Callable[[Mapping[str, Any], str], str] | None = None,
    ) -> dict[str, Any]:
        """Store a final recording's audio at ``dst`` (any object store); returns what was stored.

        The recording is fetched right before (a fresh media link) and refused, before anything is written,
        unless it is final. The audio is streamed (never whole in memory), hashed (SHA-256) on the way and
        written atomically: a partial object beside ``dst`` (locally ``.<name>.part``, ``0600``, locked and
        reused by a retry; on object stores ``.<name>.<random>.part``, one per attempt), moved into place
        only once its length is proven (``Content-Length``, chunked framing or a WAV's header; else
        :class:`~telnyx_provider.errors.RecordingIncompleteError`), removed on any failure.
        An expired or refused link (403/404) is refreshed once. The API key goes with the media request only
        when the link is on the API's own origin as urllib3 reads it; links or redirects that could be read
        two ways are refused (``TelnyxApiError`` with ``failure="refused"``).

        :param recording_sid: the recording.
        :param dst: an ``ObjectStoragePath``, a URL (``file:///...``, ``s3://...``, ``gs://...``) or a local
            path; ending in ``/``, a folder where the file is named ``{recording_sid}.{ext}`` from the
            media's content type.
        :param account_sid: the account; the connection's login when ``None``.
        :param dest_conn_id: the Airflow connection of the destination store (for a string ``dst``).
        :param overwrite: replace an existing object (else that is an error, raised before downloading).
        :param object_name: with a folder ``dst``, names the object below it from the recording (as fetched
            right before) and the media's extension; the name may hold ``/`` (sub-folders). Default
            ``{recording_sid}.{ext}``.
        :return: ``{"recording_sid", "call_sid", "path", "size", "sha256", "content_type", "duration"}``
            with ``path`` as a URL string.
        """
        from telnyx_provider.hooks import media

        return media.download_recording(
            self,
            recording_sid,
            dst,
            account_sid=account_sid,
            dest_conn_id=dest_conn_id,
            overwrite=overwrite,
            object_name=object_name,
        )

    def list_transcriptions(
        self, *, account_sid: str | None = None, recording_sid: str | None = None, page_size: int = 50
    ) -> list[dict[str, Any]]:
        """The account's recording transcriptions, every page (``GET .../Transcriptions.json``).

        A page that repeats the one before it ends the listing with a
        :class:`~telnyx_provider.errors.TelnyxApiError` rather than another request.

        :param recording_sid: keep only the transcriptions of this recording.
        """
        account = self.config.resolve_account_sid(account_sid)
        guard = PageGuard("transcriptions")
        transcriptions: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            request = api.list_transcriptions(account, page_size=page_size, page_token=token)
            page: dict[str, Any] = self._call(request, api.parse_transcription_page)
            guard.check(request, page)
            transcriptions += [
                item
                for item in page["transcriptions"]
                if recording_sid is None or item.get("recording_sid") == recording_sid
            ]
            token = api.next_page_token(page)
            if token is None or not guard.has_next(request, page):
                return transcriptions
            guard.follow_token(request, token)

    def get_transcription(self, transcription_sid: str, *, account_sid: str | None = None) -> dict[str, Any]:
        """Fetch one recording transcription (``GET .../Transcriptions/{sid}.json``)."""
        request = api.get_transcription(self.config.resolve_account_sid(account_sid), transcription_sid)
        return self._call(request, api.parse_transcription)

    def delete_transcription(self, transcription_sid: str, *, account_sid: str | None = None) -> None:
        """Delete a recording transcription (``DELETE .../Transcriptions/{sid}.json``)."""
        request = api.delete_transcription(self.config.resolve_account_sid(account_sid), transcription_sid)
        self._call(request, api.parse_reply)

    # -- transport ----------------------------------------------------------------------------------

    def _attempts(self, request: api.ApiRequest, policy: RetryPolicy | None = None) -> Retrying:
        policy = policy or self.retry_policy
        return Retrying(**policy.tenacity_kwargs(f"{request.method} {request.path}"))

    def _call(self, request: api.ApiRequest, parse: Callable[..., T], policy: RetryPolicy | None = None) -> T:
        for attempt in self._attempts(request, policy):
            with attempt:
                return self._send(request, parse)
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    def _send(self, request: api.ApiRequest, parse: Callable[..., T]) -> T:
        config = self.config
        try:
            response = self._session.request(
                request.method,
                config.url(request.path),
                params=request.query or None,
                data=request.body(),
                headers=request.headers(config.api_key),
                timeout=(
                    (config.connect_timeout, config.read_timeout)
                    if self.request_timeout is None
                    else (self.request_timeout, self.request_timeout)
                ),
                # Given per request: a session-level verify loses to REQUESTS_CA_BUNDLE in the environment.
                verify=config.verify,
                allow_redirects=False,
                auth=_KEEP_BEARER,
            )
        except requests.exceptions.SSLError as error:
            failure, detail = "tls", _describe(error)
        except requests.ConnectTimeout as error:
            failure, detail = "connect", _describe(error)
        except requests.ReadTimeout as error:
            failure, detail = "timeout", _describe(error)
        except requests.ConnectionError as error:
            failure, detail = ("connect" if _never_sent(error) else "connection"), _describe(error)
        except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError) as error:
            failure, detail = "connection", _describe(error)
        else:
            return api.read_reply(
                parse,
                request,
                response.status_code,
                response.headers,
                response.content,
                api_key=config.api_key,
            )
        # Raised outside the except blocks: the requests error (which holds the prepared request and its
        # Authorization header) is then neither the cause nor the context of ours.
        raise api.no_reply(request, failure, detail) from None


class _BearerAlreadySet(requests.auth.AuthBase):
    """The request already carries its bearer header (built by the core).

    Given as ``auth``, it keeps ``requests`` from swapping that header for credentials from ``~/.netrc``.
    """

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        return request


_KEEP_BEARER = _BearerAlreadySet()


def _describe(error: requests.RequestException) -> str:
    """The failure in a few words: urllib3's underlying reason rather than its long retry wrapper."""
    reason = getattr(error.args[0], "reason", None) if error.args else None
    if isinstance(reason, BaseException):
        return f"{type(error).__name__}: {transport_detail(reason)}"
    return transport_detail(error)


def _never_sent(error: requests.ConnectionError) -> bool:
    """Whether the connection could not even be opened (refused, unresolvable): the request was not sent."""
    reason = getattr(error.args[0], "reason", None) if error.args else None
    return isinstance(reason, NewConnectionError)
