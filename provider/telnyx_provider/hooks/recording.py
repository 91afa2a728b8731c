"""RecordingHook: the Telnyx connection and the TeXML recording endpoints over ``requests``.

The hook only moves bytes: :mod:`telnyx_provider.api` builds each request and reads each reply, and
:mod:`telnyx_provider.retry` decides what is retried, so the async client behaves the same.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

import requests
from airflow.sdk import BaseHook
from tenacity import Retrying

from telnyx_provider import api
from telnyx_provider.connection import TelnyxConnectionConfig, config_from_connection
from telnyx_provider.errors import TelnyxApiError, transport_detail
from telnyx_provider.models import find_adoptable_recording
from telnyx_provider.params import StartRecordingParams

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from telnyx_provider.retry import RetryPolicy

log = logging.getLogger(__name__)
T = TypeVar("T")


class RecordingHook(BaseHook):
    """Talk to Telnyx's TeXML recording API with the credentials of a ``telnyx`` connection.

    Connection: password = API key (sent as ``Authorization: Bearer``), login = the account SID used
    when a method is not given one, host = base URL (default ``https://api.telnyx.com/v2``).

    :param telnyx_conn_id: the Airflow connection to use.
    :param retry_policy: overrides the retry settings read from the connection's extra.
    """

    conn_name_attr = "telnyx_conn_id"
    default_conn_name = "telnyx_default"
    conn_type = "telnyx"
    hook_name = "Telnyx"

    def __init__(
        self, telnyx_conn_id: str = default_conn_name, *, retry_policy: RetryPolicy | None = None
    ) -> None:
        super().__init__()
        self.telnyx_conn_id = telnyx_conn_id
        self._retry_policy = retry_policy

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
        """The retry policy: the one given to the hook, else the connection's settings."""
        return self._retry_policy or self.config.retry_policy()

    def get_conn(self) -> requests.Session:
        """The hook's one ``requests.Session`` (connection pooling, TLS verification on)."""
        return self._session

    @cached_property
    def _session(self) -> requests.Session:
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
    ) -> dict[str, Any]:
        """Start recording a live call; returns the new recording.

        Parameters left as ``None`` are not sent (the API applies its defaults). The start is not
        idempotent: if a reply is lost, the call's recordings are listed before trying again and a
        recording this request started is adopted instead of starting a second one.
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
        account = self.config.resolve_account_sid(account_sid)
        request = api.start_call_recording(account, call_sid, params)
        requested_at = datetime.now(timezone.utc)
        for attempt in self._attempts(request):
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    adopted = self.find_recording_started_since(call_sid, requested_at, account_sid=account)
                    if adopted is not None:
                        return adopted
                return self._send(request, api.parse_recording)
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    def find_recording_started_since(
        self, call_sid: str, since: datetime, *, account_sid: str | None = None
    ) -> dict[str, Any] | None:
        """An active API-started recording on the call that began at or after ``since``, if any.

        Used to adopt a recording whose start reply was lost rather than recording the call twice.
        """
        recordings = self.list_call_recordings(call_sid, account_sid=account_sid)
        adopted = find_adoptable_recording(recordings, since)
        if adopted is not None:
            log.warning(
                "Adopting recording %s on call %s (status %s, started %s): it was started by an earlier "
                "attempt whose reply was lost, so no second recording is started.",
                adopted.get("sid"),
                call_sid,
                adopted.get("status"),
                adopted.get("start_time"),
            )
        return adopted

    def get_recording(self, recording_sid: str, *, account_sid: str | None = None) -> dict[str, Any]:
        """Fetch one recording (``GET .../Recordings/{recording_sid}.json``)."""
        request = api.get_recording(self.config.resolve_account_sid(account_sid), recording_sid)
        return self._call(request, api.parse_recording)

    def list_call_recordings(self, call_sid: str, *, account_sid: str | None = None) -> list[dict[str, Any]]:
        """The recordings of one call."""
        request = api.list_call_recordings(self.config.resolve_account_sid(account_sid), call_sid)
        page: dict[str, Any] = self._call(request, api.parse_recording_page)
        return list(page["recordings"])

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
        """Delete a recording."""
        self._call(
            api.delete_recording(self.config.resolve_account_sid(account_sid), recording_sid), api.parse_reply
        )

    def iter_recordings(
        self, *, account_sid: str | None = None, page_size: int = 50
    ) -> Iterator[dict[str, Any]]:
        """Every recording of the account, page by page."""
        account = self.config.resolve_account_sid(account_sid)
        page_number = 0
        while True:
            request = api.list_recordings(account, page=page_number, page_size=page_size)
            page: dict[str, Any] = self._call(request, api.parse_recording_page)
            yield from page["recordings"]
            if not page.get("next_page_uri") or not page["recordings"]:
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

    # -- transport ----------------------------------------------------------------------------------

    def _attempts(self, request: api.ApiRequest) -> Retrying:
        return Retrying(**self.retry_policy.tenacity_kwargs(f"{request.method} {request.path}"))

    def _call(self, request: api.ApiRequest, parse: Callable[..., T]) -> T:
        for attempt in self._attempts(request):
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
                timeout=(config.connect_timeout, config.read_timeout),
            )
        except (
            requests.ConnectionError,
            requests.Timeout,
            requests.exceptions.ChunkedEncodingError,
        ) as error:
            # Chained requests errors carry the prepared request (and its Authorization header): drop them.
            raise TelnyxApiError(
                status=None, method=request.method, path=request.path, detail=transport_detail(error)
            ) from None
        return parse(request, response.status_code, response.headers, response.content)
