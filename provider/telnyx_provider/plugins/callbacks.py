"""The signed recording status-callback receiver: a FastAPI app Airflow's API server mounts at ``/telnyx``.

``POST /telnyx/recording-status`` (form body, Telnyx's default) and ``GET /telnyx/recording-status``
(``RecordingStatusCallbackMethod=GET``: the fields in the query string). ``?conn_id=`` names the Telnyx
connection whose extra holds the account's Ed25519 ``public_key`` and whose login is the account SID
(default ``telnyx_default``).

Airflow does not authenticate plugin apps: the signature is the only gate, and it is checked before
anything is parsed. In order:

1. a POST whose ``Content-Type`` is not ``application/x-www-form-urlencoded``: 415;
2. a body (or query string) declared over the limit: 413 (414 for a query string);
3. the checks that need no connection: unsigned, a malformed timestamp or one outside the tolerance, a
   signature that is not base64 of 64 bytes, a malformed ``conn_id``: 401, without any lookup, and
   before the body is read; then the body, refused with 413 as soon as it passes the limit (a chunked
   body declares no length) and with 408 if it has not all arrived ``body_timeout`` seconds after the
   headers (a slow sender cannot hold a connection of the API server for ever); a sender that goes away
   before its body has arrived: 400, logged in one line (no traceback);
4. the connection: unknown, not of type ``telnyx``, without ``public_key`` or login; then a bad
   signature: 401. Answers (and failed lookups) are cached per worker; a failed lookup still costs the
   same signature check as a wrong key, so neither the answer nor its work tells which ids exist. A
   cached answer waits for no lookup slot, and connections whose key the worker read before are read
   again in slots of their own: forged requests naming made-up ids never hold up real callbacks;
5. a verified body that is not a form, or lacks ``AccountSid``, ``RecordingSid`` or ``RecordingStatus``: 400;
6. an ``AccountSid`` other than the connection's login (one account's key vouches for its own account
   only), or a replay (a signature already accepted within the tolerance, by any API-server worker: the
   accepted signatures are kept in the metadata database, :mod:`~telnyx_provider.plugins.receiver_store`):
   401. Every 401 has the same body; the API server's log says which;
7. a URL carrying ``start_token`` (an exact start's): the sighting is kept in the shared store, whatever the
   status (:mod:`telnyx_provider.plugins.start_tokens`; 503 if it cannot be); if that token's start
   settled on another recording of the call, this one is stopped (superseded; 503 if the stop fails); then
   the steps of ``ReceiverSettings.on_verified``, in order (a step may refuse);
8. ``completed`` or ``absent``: an event of the Asset ``telnyx://{AccountSid}/recordings`` whose extra is the
   callback's fields, then 204; 404 if no DAG uses that Asset. Other statuses (``in-progress``): 204 and
   no event. A request refused after its replay check (404, a step, a failure) is forgotten again, so the
   same delivery may come again. An event that cannot be stored (the database failing), or a step that
   fails: 503, and the log names the kind of error only (a database error's message quotes the event's
   extra, ``RecordingUrl`` among it).

``GET /telnyx/starts/{token}`` tells an exact start what the callbacks carrying its token said;
``POST /telnyx/starts/settled`` takes a start's settlement (the recording it kept, every token it sent;
authenticated by an HMAC under the connection's API key): a later callback carrying one of those tokens
that names another recording of the call is stopped by the receiver
(:mod:`~telnyx_provider.plugins.start_settlements`).

The GET signature is assumed to cover the raw query string as received (Telnyx does not document it). The
URL's own query (``conn_id``, ``start_token``, ``ReceiverSettings.url_parameters``) of a POST is not signed.
``RecordingUrl``, a short-lived bearer link to the audio, goes into the event's extra, never into a log line.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from airflow.plugins_manager import AirflowPlugin
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from telnyx_provider.exact_start import SETTLEMENT_MAC_HEADER
from telnyx_provider.plugins.callback_checks import (
    REPLAY_NAMESPACE,
    REQUIRED_FIELDS,
    UNAUTHORIZED,
    UNAVAILABLE,
    Refusal,
    VerifiedCallback,
    check_headers,
    claim,
    parse_fields,
    release,
    verify_with_connection,
)
from telnyx_provider.plugins.receiver_store import ReceiverStore, receiver_store
from telnyx_provider.plugins.recording_events import (
    CallbackKey,
    ConnectionKeys,
    UnknownAssetError,
    store_recording_event,
)
from telnyx_provider.plugins.start_settlements import settle_answer, stop_with_connection, supersede_step
from telnyx_provider.plugins.start_tokens import TOKEN_PARAMETER, answer, sighting_step
from telnyx_provider.signatures import DEFAULT_TOLERANCE_SECONDS

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = [
    "DEFAULT_CONN_ID",
    "REPLAY_NAMESPACE",
    "REQUIRED_FIELDS",
    "ReceiverSettings",
    "Refusal",
    "TelnyxCallbacksPlugin",
    "VerifiedCallback",
    "create_app",
]

log = logging.getLogger(__name__)

URL_PREFIX = "/telnyx"
ROUTE = "/recording-status"
#: Exact starts ask here what the callbacks carrying their token said (see ``plugins.start_tokens``).
STARTS_ROUTE = "/starts/{token}"
#: Exact starts sent more than once settle here (see ``plugins.start_settlements``).
SETTLE_ROUTE = "/starts/settled"
DEFAULT_CONN_ID = "telnyx_default"
#: A status callback is a few hundred bytes; anything much larger is not one.
DEFAULT_MAX_BODY_BYTES = 8192
#: Telnyx sends a few hundred bytes at once; a body still arriving after this many seconds is not a callback.
DEFAULT_BODY_TIMEOUT = 10.0
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
FINAL_STATUSES = frozenset({"completed", "absent"})
#: Connection lookups one worker runs at once (they take threads of the API server's shared pool) for ids
#: it never had a key of, and, apart from those, for connections whose key it read before (a refresh).
MAX_CONCURRENT_LOOKUPS = 4
MAX_CONCURRENT_KNOWN_LOOKUPS = 2


@dataclass
class ReceiverSettings:
    """How the receiver checks requests and where it stores events.

    :param tolerance: seconds a ``telnyx-timestamp`` may differ from the server's clock.
    :param max_body_bytes: the largest body (or query string) accepted.
    :param body_timeout: seconds a POST's whole body may take to arrive once its headers passed the checks.
    :param connection_keys: reads a connection's key and account (``conn_id -> CallbackKey``; raises
        :class:`~telnyx_provider.plugins.recording_events.ReceiverConfigError`).
    :param store_event: stores an asset event (``account_sid, extra -> event id``).
    :param store: the state every API-server worker shares (replay protection).
    :param url_parameters: names in the URL's query that are the receiver's, never callback fields.
    :param on_verified: steps run (in a worker thread) for each verified, first-seen callback before its
        event is stored; one raises :class:`Refusal` to refuse the callback.
    :param stop_recording: stops a superseded recording, ``(conn_id, account_sid, call_sid, recording_sid)``;
        returns ``False`` when it had ended already (default: with the connection's API key,
        ``start_settlements.stop_with_connection``).
    """

    tolerance: float = DEFAULT_TOLERANCE_SECONDS
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    connection_keys: Callable[[str], CallbackKey] = field(default_factory=lambda: ConnectionKeys().get)
    store_event: Callable[[str, dict[str, str]], int] = store_recording_event
    store: ReceiverStore = field(default_factory=receiver_store)
    url_parameters: frozenset[str] = frozenset({"conn_id", TOKEN_PARAMETER})
    on_verified: Sequence[Callable[[VerifiedCallback], None]] = ()
    stop_recording: Callable[[str, str, str, str], bool | None] = stop_with_connection


def settings_from_airflow_config() -> ReceiverSettings:
    """Settings from ``[telnyx] callback_tolerance_seconds``, ``[telnyx] callback_max_body_bytes`` and
    ``[telnyx] callback_body_timeout_seconds``."""
    from airflow.configuration import conf

    return ReceiverSettings(
        tolerance=conf.getfloat("telnyx", "callback_tolerance_seconds", fallback=DEFAULT_TOLERANCE_SECONDS),
        max_body_bytes=conf.getint("telnyx", "callback_max_body_bytes", fallback=DEFAULT_MAX_BODY_BYTES),
        body_timeout=conf.getfloat("telnyx", "callback_body_timeout_seconds", fallback=DEFAULT_BODY_TIMEOUT),
    )


def create_app(settings: ReceiverSettings | None = None) -> FastAPI:
    """Build the receiver's FastAPI app (routes relative to where it is mounted).

    :param settings: how to check and store; read from Airflow's configuration when ``None``.
    """
    settings = settings or settings_from_airflow_config()
    lookups = (asyncio.Semaphore(MAX_CONCURRENT_LOOKUPS), asyncio.Semaphore(MAX_CONCURRENT_KNOWN_LOOKUPS))
    steps = (
        sighting_step(settings.store),
        supersede_step(settings.store, settings.stop_recording),
        *settings.on_verified,
    )
    app = FastAPI(
        title="Telnyx recording status callbacks",
        description="Signed Telnyx recording status callbacks become events of telnyx://{account}/recordings.",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    @app.api_route(ROUTE, methods=["GET", "POST"], status_code=204)
    async def recording_status(request: Request) -> Response:
        try:
            return await _handle(request, settings, lookups, steps)
        except Refusal as refusal:
            log.warning("Refused a Telnyx status callback (HTTP %s): %s", refusal.status, refusal)
            return JSONResponse({"detail": refusal.detail}, status_code=refusal.status)

    @app.post(SETTLE_ROUTE)
    async def start_settlement(request: Request) -> Response:
        try:
            body = await _read_body(request, settings.max_body_bytes)
        except Refusal as refusal:
            return JSONResponse({"detail": refusal.detail}, status_code=refusal.status)
        conn_id = request.query_params.get("conn_id") or DEFAULT_CONN_ID
        mac = request.headers.get(SETTLEMENT_MAC_HEADER)
        async with lookups[0]:
            status, answer_body = await run_in_threadpool(
                settle_answer, settings.store, settings.connection_keys, conn_id, body, mac
            )
        return JSONResponse(answer_body, status_code=status, headers={"Cache-Control": "no-store"})

    @app.get(STARTS_ROUTE)
    async def start_sightings(token: str) -> Response:
        status, body = await run_in_threadpool(answer, settings.store, token)
        return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})

    return app


async def _handle(
    request: Request,
    settings: ReceiverSettings,
    lookups: tuple[asyncio.Semaphore, asyncio.Semaphore],
    steps: Sequence[Callable[[VerifiedCallback], None]],
) -> Response:
    is_get = request.method == "GET"
    if not is_get:
        content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if content_type != FORM_CONTENT_TYPE:
            raise Refusal(415, f"Status callbacks must be sent as {FORM_CONTENT_TYPE}.")
        _check_declared_length(request, settings.max_body_bytes)
    else:
        payload = request.scope.get("query_string", b"")
        if len(payload) > settings.max_body_bytes:
            raise Refusal(414, f"The query string is over {settings.max_body_bytes} bytes.")
    conn_id = request.query_params.get("conn_id") or DEFAULT_CONN_ID
    signed = check_headers(request.headers, conn_id, settings.tolerance)
    if not is_get:  # read only once the headers passed, and for a bounded time
        try:
            payload = await asyncio.wait_for(
                _read_body(request, settings.max_body_bytes), timeout=settings.body_timeout
            )
        except asyncio.TimeoutError:
            raise Refusal(408, f"The body did not arrive within {settings.body_timeout:g} s.") from None
    key, verified = await verify_with_connection(conn_id, payload, signed, settings.connection_keys, *lookups)
    fields = parse_fields(payload, drop=settings.url_parameters if is_get else frozenset())
    if fields["AccountSid"] != key.account_sid:
        raise Refusal(
            401,
            UNAUTHORIZED,
            f"the callback's AccountSid is not the login of connection {conn_id!r}, whose key signed it",
        )
    callback = VerifiedCallback(
        conn_id=conn_id,
        account_sid=key.account_sid,
        fields=fields,
        url_parameters={
            name: value for name, value in request.query_params.items() if name in settings.url_parameters
        },
        signature=verified,
    )
    replay_key = await claim(settings.store, settings.tolerance, callback)
    done = False
    try:
        for step in steps:
            await run_in_threadpool(step, callback)
        done = await _deliver(settings, fields)
        return Response(status_code=204)
    except Refusal:
        raise
    except Exception as error:  # the database failing, a step failing: Telnyx must deliver it again
        # Only the kinds of error: a database error's message quotes the statement's parameters, and the
        # event's extra among them holds RecordingUrl, a bearer link to the audio.
        reason = f"the callback of recording {fields['RecordingSid']} could not be stored ({_kinds(error)})"
        raise Refusal(503, UNAVAILABLE, reason) from None
    finally:
        if not done:  # nothing was stored: the same request may come again, and must then be accepted
            await release(settings.store, replay_key)


def _kinds(error: BaseException) -> str:
    """The class names of ``error`` and of the driver error it wraps, if any (never their messages)."""
    kinds = [type(error).__name__]
    cause = getattr(error, "orig", None) or error.__cause__
    if isinstance(cause, BaseException):
        kinds.append(f"{type(cause).__module__}.{type(cause).__name__}")
    return ", from ".join(kinds)


async def _deliver(settings: ReceiverSettings, fields: dict[str, str]) -> bool:
    """Store the event of a final callback; ``True`` once the callback is handled for good."""
    status = fields["RecordingStatus"]
    if status not in FINAL_STATUSES:
        log.info("Telnyx callback: recording %s is %s; no event.", fields["RecordingSid"], status)
        return True
    try:
        event_id = await run_in_threadpool(settings.store_event, fields["AccountSid"], fields)
    except UnknownAssetError as error:
        raise Refusal(
            404,
            f"No DAG uses the Asset {error}: nothing is scheduled on the recordings of this account, "
            "so the event was not stored.",
        ) from None
    sid = fields["RecordingSid"]
    log.info("Telnyx callback: recording %s is %s; asset event %s stored.", sid, status, event_id)
    return True


def _check_declared_length(request: Request, limit: int) -> None:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise Refusal(400, "Malformed Content-Length header.")
        if int(declared) > limit:
            raise Refusal(413, f"The body is over {limit} bytes.")


async def _read_body(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():  # also bounds a chunked body, which declares no length
            size += len(chunk)
            if size > limit:
                raise Refusal(413, f"The body is over {limit} bytes.")
            chunks.append(chunk)
    except ClientDisconnect:  # nobody reads the answer; a refusal keeps it to one line in the log
        raise Refusal(400, "The sender went away before its body arrived.") from None
    return b"".join(chunks)


class TelnyxCallbacksPlugin(AirflowPlugin):
    """Mounts the status-callback receiver on Airflow's API server at ``/telnyx``."""

    name = "telnyx_callbacks"
    fastapi_apps = [  # noqa: RUF012 - the attribute Airflow reads
        {"app": create_app(), "url_prefix": URL_PREFIX, "name": "Telnyx recording status callbacks"}
    ]
