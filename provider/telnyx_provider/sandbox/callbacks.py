"""Recording status callbacks: what they carry, when they are due, and the thread that delivers them."""

from __future__ import annotations

import logging
import queue
import threading
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from telnyx_provider.sandbox.scheduler import DueScheduler

if TYPE_CHECKING:
    from collections.abc import Callable

    from telnyx_provider.sandbox.params import StartParams
    from telnyx_provider.sandbox.store import RecordingStore

log = logging.getLogger(__name__)

CALLBACK_TIMEOUT = 5.0
FINAL_EVENTS = frozenset({"completed", "absent"})


@dataclass(frozen=True, slots=True)
class CallbackRequest:
    """One status callback to deliver.

    :param url: the ``RecordingStatusCallback`` URL.
    :param method: ``GET`` (fields in the query string) or ``POST`` (form-encoded body).
    :param fields: the callback fields.
    """

    url: str
    method: str
    fields: dict[str, str]


def build_callback(view: dict[str, Any], params: StartParams) -> CallbackRequest | None:
    """Return the callback a recording in state ``view`` triggers, or None if it asked for none.

    ``RecordingDuration`` is sent once known (completed/absent); ``RecordingUrl`` only when
    ``SendRecordingUrl`` is true and the media exists.

    :param view: the recording's JSON at the event.
    :param params: the recording's start parameters (callback URL, method, events).
    """
    status = view["status"]
    if params.callback_url is None or status not in params.events:
        return None
    fields = {
        "AccountSid": view["account_sid"],
        "CallSid": view["call_sid"],
        "RecordingSid": view["sid"],
        "RecordingStatus": status,
        "RecordingChannels": str(view["channels"]),
        "RecordingSource": view["source"],
        "RecordingStartTime": view["start_time"],
    }
    if view["duration"] is not None:
        fields["RecordingDuration"] = view["duration"]
    if params.send_recording_url and view["media_url"] is not None:
        fields["RecordingUrl"] = view["media_url"]
    return CallbackRequest(params.callback_url, params.callback_method, fields)


class CallbackSender:
    """Delivers callbacks from one background thread so no API request ever waits on a receiver.

    :param on_result: called with True/False after each delivery attempt (counted, never raised).
    :param timeout: seconds before a delivery attempt is given up.
    """

    def __init__(self, on_result: Callable[[bool], None], timeout: float = CALLBACK_TIMEOUT) -> None:
        self._on_result = on_result
        self._timeout = timeout
        self._queue: queue.Queue[CallbackRequest | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the delivery thread (daemon)."""
        self._thread = threading.Thread(target=self._run, name="telnyx-sandbox-callbacks", daemon=True)
        self._thread.start()

    def send(self, request: CallbackRequest) -> None:
        """Queue a callback for delivery.

        :param request: the callback.
        """
        self._queue.put(request)

    def stop(self, timeout: float = 2.0) -> None:
        """Stop after the callbacks already queued (waits at most ``timeout`` seconds).

        :param timeout: seconds to wait for the thread.
        """
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def _deliver(self, request: CallbackRequest) -> bool:
        encoded = urlencode(request.fields)
        if request.method == "GET":
            separator = "&" if "?" in request.url else "?"
            http_request = urllib.request.Request(f"{request.url}{separator}{encoded}", method="GET")
        else:
            http_request = urllib.request.Request(
                request.url,
                data=encoded.encode(),
                method="POST",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
        try:
            with urllib.request.urlopen(http_request, timeout=self._timeout) as reply:
                reply.read()
                return bool(reply.status < 400)
        except Exception as exc:  # any failure of a receiver is counted, never propagated
            log.debug("Status callback to %s failed: %s", request.url, exc)
            return False

    def _run(self) -> None:
        while (request := self._queue.get()) is not None:
            self._on_result(self._deliver(request))


class StatusNotifier:
    """Turns recording transitions into status callbacks: at once for ``in-progress``, on time for the end.

    :param store: the recordings.
    :param sender: delivers the callbacks.
    """

    def __init__(self, store: RecordingStore, sender: CallbackSender) -> None:
        self._store = store
        self._sender = sender
        self._scheduler = DueScheduler(self._fire, store.clock)

    def start(self) -> None:
        """Start the scheduler thread."""
        self._scheduler.start()

    def stop(self) -> None:
        """Stop the scheduler thread."""
        self._scheduler.stop()

    def started(self, view: dict[str, Any], params: StartParams) -> None:
        """React to a recording's start: send ``in-progress`` if asked, schedule the final callback.

        :param view: the recording's JSON at start.
        :param params: its start parameters.
        """
        request = build_callback(view, params)
        if request is not None:
            self._sender.send(request)
        if params.callback_url is not None and params.events & FINAL_EVENTS:
            self.watch(view["sid"])

    def watch(self, recording_sid: str) -> None:
        """(Re)schedule the final callback of a recording whose end time may have become known or moved.

        :param recording_sid: the recording.
        """
        due = self._store.final_due(recording_sid)
        if due is not None:
            self._scheduler.schedule(due, recording_sid)

    def _fire(self, recording_sid: str) -> float | None:
        check = self._store.claim_final(recording_sid)
        if check.view is not None and check.params is not None:
            request = build_callback(check.view, check.params)
            if request is not None:
                self._sender.send(request)
        return check.due
