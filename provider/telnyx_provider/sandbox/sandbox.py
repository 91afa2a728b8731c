"""``Sandbox``: a local fake of Telnyx's TeXML call-recording API, started and stopped from Python."""

from __future__ import annotations

import json
import logging
import secrets
import threading
import uuid
from typing import TYPE_CHECKING, Any

from telnyx_provider.sandbox.api import RecordingApi
from telnyx_provider.sandbox.callbacks import CallbackSender, StatusNotifier
from telnyx_provider.sandbox.faults import FaultInjector
from telnyx_provider.sandbox.links import DEFAULT_TTL, MediaLinks
from telnyx_provider.sandbox.listing import ListPolicy
from telnyx_provider.sandbox.media import MAX_SECONDS
from telnyx_provider.sandbox.media_route import MediaFaults, MediaRoute, check_delivery
from telnyx_provider.sandbox.server import SandboxHTTPServer
from telnyx_provider.sandbox.signing import CallbackSigner
from telnyx_provider.sandbox.stats import FAULT_KINDS, Stats
from telnyx_provider.sandbox.store import RecordingStore

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import TracebackType

log = logging.getLogger(__name__)

_WILDCARD_HOSTS = ("", "0.0.0.0", "::")


class Sandbox:
    """A local HTTP server that behaves like Telnyx's TeXML recording API (see the package docstring).

    Use as a context manager, or call :meth:`start` and :meth:`stop`::

        with Sandbox(port=0, processing_delay=0.2) as sb:
            call_sid = sb.create_call()
            ...  # point a client at sb.base_url with sb.api_key

    :param port: TCP port to listen on; 0 picks a free one.
    :param recording_seconds: a recording also ends this many seconds after its start; None: only on
        hang-up or stop.
    :param processing_delay: seconds between a recording's end and its ``completed``/``absent`` state.
    :param fault_rate: fraction of ``/v2`` requests that get a fault.
    :param faults: fault kinds to choose from: ``429``, ``500``, ``503``, ``reset``, ``slow`` (the default
        set), ``504``, ``reset_before``, ``reset_after``.
    :param retry_after: seconds an injected 429 asks the client to wait.
    :param slow_seconds: delay of a ``slow`` reply.
    :param seed: seed of the fault generator, for reproducible runs.
    :param api_key: the bearer token to accept; generated if None.
    :param account_sid: the account sid to serve; a uuid4 if None.
    :param host: interface to bind.
    :param clock_skew: seconds the service's clock is off from ours: every date it reports is shifted by this
        much, and the ``DateCreated`` list filters are read in its clock.
    :param list_lag: seconds a new recording stays out of both list endpoints (eventual consistency).
    :param max_page_size: list pages hold at most this many recordings, whatever ``PageSize`` asks.
    :param media_url_ttl: seconds a ``media_url`` stays valid after the JSON carrying it was served.
    :param media_seconds_cap: the longest media served, in seconds (16 kB per second and channel).
    :param media_cut_rate: fraction of media transfers cut midway (half the bytes, then closed).
    :param media_framing: how media bodies are delimited: ``length`` (``Content-Length``), ``chunked``, or
        ``close`` (HTTP/1.0 style: no length, the body ends when the connection closes).
    :param media_format: the audio served, ``wav`` or ``mp3`` (links end in the matching extension).
    :param media_bytes_per_second: send media no faster than this (None: at once).
    :param strict_schema: every reply has exactly the fields of its response schema in Telnyx's spec:
        start and update replies carry ``track`` but no ``status``; fetched and listed recordings carry
        ``status`` but no ``track`` (see ``telnyx_provider.sandbox.schema``). On by default; off: the
        sandbox's older, fuller replies, with ``track`` and ``status`` everywhere (no real reply looks so).
    :param date_format: how dates are written: ``rfc2822`` (``Fri, 11 Aug 2023 19:12:11 +0000``, as Telnyx's
        documented examples) or ``iso8601`` (``2023-08-11T19:12:11Z``, the spec's ``date-time``).
    """

    def __init__(
        self,
        port: int = 0,
        recording_seconds: float | None = None,
        processing_delay: float = 0.5,
        fault_rate: float = 0.0,
        faults: Sequence[str] = FAULT_KINDS,
        retry_after: int = 1,
        slow_seconds: float = 1.0,
        seed: int | None = None,
        api_key: str | None = None,
        account_sid: str | None = None,
        host: str = "127.0.0.1",
        clock_skew: float = 0.0,
        list_lag: float = 0.0,
        max_page_size: int | None = None,
        media_url_ttl: float = DEFAULT_TTL,
        media_seconds_cap: int = MAX_SECONDS,
        media_cut_rate: float = 0.0,
        media_framing: str = "length",
        media_format: str = "wav",
        media_bytes_per_second: float | None = None,
        strict_schema: bool = True,
        date_format: str = "rfc2822",
    ) -> None:
        self.host = host
        self.strict_schema = bool(strict_schema)
        self.port = port
        self.api_key = api_key or "KEYsandbox_" + secrets.token_hex(16)
        self.account_sid = account_sid or str(uuid.uuid4())
        self._store = RecordingStore(
            self.account_sid,
            recording_seconds=recording_seconds,
            processing_delay=processing_delay,
            policy=ListPolicy(list_lag=list_lag, clock_skew=clock_skew, max_page_size=max_page_size),
            media_links=MediaLinks(media_url_ttl),
            date_format=date_format,
        )
        self.date_format = self._store.date_format
        self._injector = FaultInjector(fault_rate, faults, seed, retry_after, slow_seconds)
        self._stats = Stats()
        signer = CallbackSigner()
        self.public_key = signer.public_key
        self._sender = CallbackSender(self._stats.callback, signer=signer, clock=self._store.service_now)
        self._notifier = StatusNotifier(self._store, self._sender)
        self._api = RecordingApi(self._store, self._notifier, self.api_key, strict_schema=self.strict_schema)
        self._media_faults = MediaFaults(media_cut_rate, seed)
        self._media = MediaRoute(self._store, self._media_faults, self._stats, media_seconds_cap)
        self.configure_media(media_framing, media_format, media_bytes_per_second)
        self._server: SandboxHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> Sandbox:
        """Bind the port and serve from a daemon thread.

        :return: this sandbox.
        :raises RuntimeError: if it is already running.
        """
        if self._server is not None:
            raise RuntimeError("Sandbox already started")
        server = SandboxHTTPServer(
            (self.host, self.port), self._api, self, self._injector, self._stats, self._media
        )
        self.port = server.server_port
        self._store.media_prefix = f"{self.origin}/media/"
        self._sender.start()
        self._notifier.start()
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="telnyx-sandbox-http",
            daemon=True,
        )
        self._server = server
        self._thread.start()
        log.info("Telnyx sandbox listening on %s", self.base_url)
        return self

    def stop(self) -> None:
        """Stop serving, close the listening socket and open connections (safe to call twice)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
        self._notifier.stop()
        self._sender.stop()

    @property
    def origin(self) -> str:
        """``http://host:port`` of the running server (a wildcard bind is reached via 127.0.0.1)."""
        host = "127.0.0.1" if self.host in _WILDCARD_HOSTS else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The API base URL, e.g. ``http://127.0.0.1:8765/v2`` (the counterpart of ``https://api.telnyx.com/v2``).

        :raises RuntimeError: before :meth:`start`.
        """
        if self._server is None:
            raise RuntimeError("Sandbox not started")
        return f"{self.origin}/v2"

    def create_call(
        self,
        hangup_after: float | None = None,
        silent: bool = False,
        transcribe: bool = False,
        audio_seconds: int | None = None,
    ) -> str:
        """Create a live call recordings can be started on.

        :param hangup_after: hang the call up by itself this many seconds from now.
        :param silent: recordings on this call finish ``absent`` (no audio) instead of ``completed``.
        :param transcribe: completed recordings on this call get a transcription (``/Transcriptions``).
        :param audio_seconds: every recording on this call reports this duration once final and serves that
            much audio (up to ``media_seconds_cap``), whatever the time it ran: long media without waiting.
        :return: the call sid, ``v3:`` followed by 54 URL-safe characters.
        :raises ValueError: for ``audio_seconds`` below 1.
        """
        return self._store.create_call(hangup_after, silent, transcribe, audio_seconds)

    def seed_history(
        self,
        days: int,
        *,
        per_day: int = 20,
        audio_seconds: int = 60,
        absent_rate: float = 0.05,
        not_final: int = 2,
        seed: int | None = None,
    ) -> dict[str, Any]:
        """Give the account recordings created over the ``days`` whole UTC days before today.

        Every ``RecordingSource`` of the spec appears in turn; every seventh call has two recordings started
        the same second; ``absent_rate`` of the calls recorded nothing (``absent``); the last day's latest
        ``not_final`` recordings are still ``in-progress`` or ``paused`` (their calls are live:
        :meth:`hangup` ends them). No status callback is sent for history.

        :param days: how many past days (today excluded), at least 1.
        :param per_day: recordings created on each day.
        :param audio_seconds: duration of each recording (its audio is capped at ``media_seconds_cap``).
        :param absent_rate: fraction of calls whose recordings end ``absent``.
        :param not_final: recordings of the last day not final yet.
        :param seed: seed of the draw (times, channels, silent calls).
        :return: ``{"recordings", "calls", "by_source", "by_status", "first_created", "last_created",
            "not_final"}`` (epoch times; ``not_final``: the SIDs of the recordings not final yet).
        :raises ValueError: for a value out of range.
        """
        from telnyx_provider.sandbox import history

        now = self._store.clock()
        plan = history.plan_history(
            days,
            now=now,
            per_day=per_day,
            audio_seconds=audio_seconds,
            absent_rate=absent_rate,
            not_final=not_final,
            seed=seed,
        )
        calls, recordings = history.build_history(plan, now=now, new_sid=lambda: str(uuid.uuid4()))
        self._store.add_past(calls, recordings)
        return history.summary(recordings, now, self._store.processing_delay)

    def hangup(self, call_sid: str) -> None:
        """Hang a call up now: its running recordings end and then complete after the processing delay.

        :param call_sid: the call.
        :raises telnyx_provider.sandbox.errors.ApiError: 404 for an unknown call.
        """
        for recording_sid in self._store.hangup(call_sid):
            self._notifier.watch(recording_sid)

    def started_on(self, call_sid: str) -> list[dict[str, Any]]:
        """What the sandbox started on a call, as it knows it: ``{"sid", "track", "channels",
        "callback_url"}`` per recording, oldest first, deleted ones included.

        Telnyx's fetch and list replies carry no ``track``: this is the service's own side, for tests and
        benchmarks that judge what a client did (also ``GET /_sandbox/calls/{call_sid}/started``).

        :param call_sid: the call.
        :raises telnyx_provider.sandbox.errors.ApiError: 404 for an unknown call.
        """
        return self._store.started_on(call_sid)

    def set_faults(self, fault_rate: float, faults: Sequence[str] | None = None) -> None:
        """Change fault injection while running.

        :param fault_rate: new fraction of faulted ``/v2`` requests.
        :param faults: new fault kinds, or None to keep the current list.
        :raises ValueError: for a rate outside [0, 1] or an unknown kind.
        """
        self._injector.configure(fault_rate, faults)

    def inject(self, route: str, kind: str, count: int = 1, call_sid: str | None = None) -> None:
        """Give the next ``count`` requests of one API route a fault, before (and whatever) the random draw.

        Injections queue up: a second one on the same route starts once the first is used up.

        :param route: a route key as in ``stats()["requests_by_route"]``, e.g.
            ``"POST /Calls/{call_sid}/Recordings"``, ``"GET /Calls/{call_sid}/Recordings"``,
            ``"GET /Recordings/{sid}"``.
        :param kind: a fault kind: ``429``, ``500``, ``503``, ``504``, ``reset``, ``reset_before``,
            ``reset_after`` or ``slow``.
        :param count: how many requests it hits (>= 1).
        :param call_sid: only requests on this call's path (routes with ``{call_sid}`` only).
        :raises ValueError: for an unknown route or kind, a count below 1, or a ``call_sid`` on a route
            without one.
        """
        if route not in self._api.route_keys:
            raise ValueError(f"Unknown route {route!r}; choose among {', '.join(self._api.route_keys)}")
        if call_sid is not None and "{call_sid}" not in route:
            raise ValueError(f"Route {route!r} has no call sid in its path; call_sid cannot restrict it")
        self._injector.inject(route, kind, count, call_sid)

    def rotate_api_key(self, api_key: str | None = None) -> str:
        """Revoke the API key and accept a new one, as a user rotating a key in the Telnyx portal does.

        :param api_key: the new key; generated if None.
        :return: the new key (also ``api_key``).
        """
        self.api_key = api_key or "KEYsandbox_" + secrets.token_hex(16)
        self._api.rotate_key(self.api_key)
        return self.api_key

    def replay_callback(self, recording_sid: str) -> int | None:
        """Send the last status callback of a recording again, byte for byte with the same headers (the same
        signature and timestamp): a real replay, for testing a receiver's replay protection. Synchronous.

        :param recording_sid: the recording.
        :return: the receiver's HTTP status, or None if it could not be reached.
        :raises KeyError: if no callback was sent for that recording.
        """
        try:
            return self._sender.replay(recording_sid)
        except KeyError:
            raise KeyError(f"No status callback was sent for recording {recording_sid}") from None

    def hold_callbacks(self) -> None:
        """Hold every status callback from now on until :meth:`release_callbacks`: they come late, as a
        real service's may (signed when they finally go out)."""
        self._sender.hold()

    def release_callbacks(self) -> None:
        """Deliver the held status callbacks, in order, and the next ones as they come."""
        self._sender.release()

    def drop_callbacks(self, count: int = 1) -> None:
        """Never deliver the next ``count`` status callbacks (``callbacks_failed`` counts them): callbacks
        that never arrive.

        :param count: how many (>= 1).
        :raises ValueError: for a count below 1.
        """
        self._sender.drop(count)

    def inject_media(self, kind: str, count: int = 1, location: str | None = None) -> None:
        """Give the next ``count`` media requests a fault: ``cut`` (the transfer stops midway: half the bytes,
        connection closed; HEADs and refused links do not use it up), ``403`` or ``404`` (the link is refused
        once, S3-style), or ``redirect`` (a valid link answers ``302`` with ``location``, sent as given).

        :param kind: ``cut``, ``403``, ``404`` or ``redirect``.
        :param count: how many requests (>= 1).
        :param location: the ``Location`` of a redirect (any string: relative, foreign, malformed).
        :raises ValueError: for an unknown kind, a count below 1, or a location missing or given needlessly.
        """
        self._media_faults.inject(kind, count, location)

    def configure_media(
        self,
        framing: str = "length",
        audio_format: str = "wav",
        bytes_per_second: float | None = None,
        link: str | None = None,
    ) -> None:
        """Set how media are served from now on (every argument; the defaults are the sandbox's defaults).

        :param framing: ``length`` (``Content-Length``), ``chunked``, or ``close`` (HTTP/1.0 style: no length
            at all, the body ends when the connection closes, so a cut transfer looks like a whole one).
        :param audio_format: ``wav`` or ``mp3``: links handed out from now on end in it, and serve it.
        :param bytes_per_second: send media no faster than this (None: at once).
        :param link: report this ``media_url`` instead of a signed link, e.g. a URL on another host that
            records what it receives; ``{sid}`` is replaced by the recording's SID and ``{path}`` by the
            signed link's path and query (``http://localhost:PORT{path}`` reaches this sandbox under another
            name). None: signed links.
        :raises ValueError: for an unknown framing or format, a rate that is not positive, or a link that
            is not a string.
        """
        check_delivery(framing, audio_format, bytes_per_second)
        if link is not None and not isinstance(link, str):
            raise ValueError(f"media link must be a string, got {link!r}")
        self._media.framing, self._media.bytes_per_second = framing, bytes_per_second
        self._store.media_links.extension, self._store.media_links.link = audio_format, link

    def media(self, recording_sid: str) -> tuple[int, int] | None:
        """Return ``(seconds, channels)`` of a completed recording's audio, or None if there is none.

        :param recording_sid: the recording.
        """
        return self._store.media(recording_sid)

    def stats(self) -> dict[str, Any]:
        """Return counters: ``requests_by_route``, ``requests_total``, ``gets_per_recording``,
        ``listings_per_recording`` (how many list pages served each recording),
        ``updates_per_recording`` (pauses, resumes and stops), ``starts_per_call``, ``connections_accepted``,
        ``faults_injected``, ``resets_after_handling``,
        ``callbacks_sent``, ``callbacks_failed``, ``completed_at``, ``calls``, ``recordings``, ``fault_rate``,
        ``faults``, ``injections_pending``, ``media_requests``, ``media_requests_with_auth``,
        ``media_faults_injected``, ``media_injections_pending``, ``callbacks_by_recording`` and
        ``callbacks_replayed``.
        """
        result = self._stats.snapshot()
        result["starts_per_call"] = self._store.starts_per_call()
        result["completed_at"] = self._store.completed_at()
        result.update(self._store.counts())
        result["fault_rate"] = self._injector.fault_rate
        result["faults"] = list(self._injector.faults)
        result["injections_pending"] = self._injector.pending()
        result["media_injections_pending"] = self._media_faults.pending()
        return result

    def airflow_conn_json(self) -> str:
        """Return the JSON for ``AIRFLOW_CONN_TELNYX_DEFAULT`` that points a ``telnyx`` connection here.

        Its extra carries ``public_key``, the key that verifies this sandbox's signed status callbacks.
        """
        return json.dumps(
            {
                "conn_type": "telnyx",
                "host": self.base_url,
                "login": self.account_sid,
                "password": self.api_key,
                "extra": {"public_key": self.public_key},
            }
        )

    def connection_uri(self) -> str:
        """Same as :meth:`airflow_conn_json` (Airflow reads ``AIRFLOW_CONN_*`` values in JSON form too)."""
        return self.airflow_conn_json()
