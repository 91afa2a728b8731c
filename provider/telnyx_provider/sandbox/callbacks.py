"""Recording status callbacks: what they carry, when they are due, and the thread that delivers them."""

from __future__ import annotations

import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from telnyx_provider.sandbox.scheduler import DueScheduler

if TYPE_CHECKING:
    from collections.abc import Callable

    from telnyx_provider.sandbox.params import StartParams
    from telnyx_provider.sandbox.signing import CallbackSigner
    from telnyx_provider.sandbox.store import RecordingStore

log = logging.getLogger(__name__)

CALLBACK_TIMEOUT = 5.0
FINAL_EVENTS = frozenset({"completed", "absent"})
FORM_TYPE = "application/x-www-form-urlencoded"


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


@dataclass(frozen=True, slots=True)
class SignedCallback:
    """A callback ready to go on the wire: kept per recording so it can be replayed byte for byte.

    :param recording_sid: the recording it is about.
    :param url: the full URL (with the fields in its query string for a GET).
    :param method: ``GET`` or ``POST``.
    :param body: the form-encoded body of a POST, None for a GET.
    :param headers: the headers, signature and timestamp included.
    """

    recording_sid: str
    url: str
    method: str
    body: bytes | None
    headers: dict[str, str]


class CallbackSender:
    """Signs and delivers callbacks from one background thread so no API request ever waits on a receiver.

    :param on_result: called with (delivered, recording sid, replay) after each delivery attempt (counted,
        never raised).
    :param timeout: seconds before a delivery attempt is given up.
    :param signer: signs each callback (Ed25519); None sends them unsigned.
    :param clock: the service's clock, for the ``telnyx-timestamp`` header.
    """

    def __init__(
        self,
        on_result: Callable[[bool, str, bool], None],
        timeout: float = CALLBACK_TIMEOUT,
        signer: CallbackSigner | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._on_result = on_result
        self._timeout = timeout
        self._signer = signer
        self._clock = clock
        self._queue: queue.Queue[CallbackRequest | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._last: dict[str, SignedCallback] = {}
        self._last_lock = threading.Lock()
        # Delivery faults a real service has too: callbacks that come late (held), or never (dropped).
        self._open = threading.Event()
        self._open.set()
        self._stopping = False
        self._to_drop = 0

    def start(self) -> None:
        """Start the delivery thread (daemon)."""
        self._thread = threading.Thread(target=self._run, name="telnyx-sandbox-callbacks", daemon=True)
        self._thread.start()

    def send(self, request: CallbackRequest) -> None:
        """Queue a callback for delivery.

        :param request: the callback.
        """
        self._queue.put(request)

    def hold(self) -> None:
        """Keep every callback queued from now on, undelivered, until :meth:`release` (a late callback)."""
        self._open.clear()

    def release(self) -> None:
        """Deliver the held callbacks (signed as they go out, as a late delivery is) and the next ones."""
        self._open.set()

    def drop(self, count: int = 1) -> None:
        """Never deliver the next ``count`` callbacks (counted as failed): a callback that never arrives.

        :param count: how many (>= 1).
        :raises ValueError: for a count below 1.
        """
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        with self._last_lock:
            self._to_drop += count

    def stop(self, timeout: float = 2.0) -> None:
        """Stop after the callbacks already queued (waits at most ``timeout`` s); held ones are never sent.

        :param timeout: seconds to wait for the thread.
        """
        if self._thread is not None:
            self._stopping = True
            self._open.set()
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def prepare(self, request: CallbackRequest) -> SignedCallback:
        """Encode and sign a callback as it will be sent now.

        :param request: the callback.
        """
        encoded = urlencode(request.fields)
        headers: dict[str, str] = {}
        if request.method == "GET":
            separator = "&" if "?" in request.url else "?"
            url, body = f"{request.url}{separator}{encoded}", None
            payload = urlsplit(url).query.encode()
        else:
            url, body = request.url, encoded.encode()
            payload = body
            headers["Content-Type"] = FORM_TYPE
        if self._signer is not None:
            headers.update(self._signer.headers(int(self._clock()), payload))
        return SignedCallback(request.fields["RecordingSid"], url, request.method, body, headers)

    def replay(self, recording_sid: str) -> int | None:
        """Send a recording's last callback again, byte for byte, headers (signature, timestamp) included.

        :param recording_sid: the recording.
        :return: the receiver's HTTP status, or None if it could not be reached.
        :raises KeyError: if no callback was sent for that recording.
        """
        with self._last_lock:
            signed = self._last[recording_sid]
        status = self._deliver(signed)
        self._on_result(status is not None and status < 400, recording_sid, True)
        return status

    def _deliver(self, signed: SignedCallback) -> int | None:
        request = urllib.request.Request(
            signed.url, data=signed.body, method=signed.method, headers=signed.headers
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as reply:
                reply.read()
                return int(reply.status)
        except urllib.error.HTTPError as error:
            return int(error.code)
        except Exception as exc:  # any failure of a receiver is counted, never propagated
            log.debug("Status callback to %s failed: %s", urlsplit(signed.url).netloc, exc)
            return None

    def _run(self) -> None:
        while (request := self._queue.get()) is not None:
            self._open.wait()
            if self._stopping:
                return
            with self._last_lock:
                dropped, self._to_drop = self._to_drop > 0, max(self._to_drop - 1, 0)
            if dropped:
                self._on_result(False, request.fields["RecordingSid"], False)
                continue
            signed = self.prepare(request)
            with self._last_lock:
                self._last[signed.recording_sid] = signed
            status = self._deliver(signed)
            self._on_result(status is not None and status < 400, signed.recording_sid, False)


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
