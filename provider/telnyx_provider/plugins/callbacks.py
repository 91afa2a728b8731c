"""The signed recording status-callback receiver: a FastAPI app Airflow's API server mounts at ``/telnyx``.

``POST /telnyx/recording-status`` (form body, Telnyx's default) and ``GET /telnyx/recording-status``
(``RecordingStatusCallbackMethod=GET``: the fields in the query string). ``?conn_id=`` names the Telnyx
connection whose extra holds the account's Ed25519 ``public_key`` (default ``telnyx_default``).

Airflow does not authenticate plugin apps: the signature is the only gate, and it is checked before
anything is parsed. In order:

1. a POST whose ``Content-Type`` is not ``application/x-www-form-urlencoded``: 415;
2. a body (or query string) over the limit: 413 (414 for a query string), refused before it is read;
3. unsigned, malformed signature, stale timestamp, unknown connection or one without ``public_key``, bad
   signature, replay (a signature already accepted within the tolerance): 401, all with the same answer
   (the API server's log says which);
4. a body that is not a form, or lacks ``AccountSid``, ``RecordingSid`` or ``RecordingStatus``: 400;
   a URL carrying ``start_token`` (an exact start's): the sighting is kept in the shared store (503 if it
   cannot be), whatever the status (:mod:`telnyx_provider.plugins.start_tokens`);
5. ``completed`` or ``absent``: an event of the Asset ``telnyx://{AccountSid}/recordings`` whose extra is the
   callback's fields, then 204; 404 if no DAG uses that Asset. Other statuses (``in-progress``): 204 and
   no event.

``GET /telnyx/starts/{token}`` tells an exact start what the callbacks carrying its token said.

The GET signature is assumed to cover the raw query string as received (Telnyx does not document it).
``RecordingUrl``, a short-lived bearer link to the audio, goes into the event's extra, never into a log line.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from airflow.plugins_manager import AirflowPlugin
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from telnyx_provider.exact_start import TOKEN_PARAMETER, is_token
from telnyx_provider.params import require_identifier
from telnyx_provider.plugins.recording_events import (
    PublicKeys,
    ReceiverConfigError,
    UnknownAssetError,
    store_recording_event,
)
from telnyx_provider.plugins.start_tokens import SightingStore, answer, record_sighting, shared_store
from telnyx_provider.signatures import (
    DEFAULT_TOLERANCE_SECONDS,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    ReplayCache,
    SignatureError,
    VerifiedSignature,
    verify_signature,
)

if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger(__name__)

URL_PREFIX = "/telnyx"
ROUTE = "/recording-status"
#: Exact starts ask here what the callbacks carrying their token said (see ``plugins.start_tokens``).
STARTS_ROUTE = "/starts/{token}"
DEFAULT_CONN_ID = "telnyx_default"
#: A status callback is a few hundred bytes; anything much larger is not one.
DEFAULT_MAX_BODY_BYTES = 8192
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
FINAL_STATUSES = frozenset({"completed", "absent"})
REQUIRED_FIELDS = ("AccountSid", "RecordingSid", "RecordingStatus")
_UNAUTHORIZED = "The request's Telnyx signature could not be verified."
_MAX_CONN_ID = 250


class Refusal(Exception):
    """A request the receiver refuses: the HTTP status, what the sender is told, and why (for our log)."""

    def __init__(self, status: int, detail: str, reason: str | None = None) -> None:
        super().__init__(reason or detail)
        self.status = status
        self.detail = detail


@dataclass
class ReceiverSettings:
    """How the receiver checks requests and where it stores events.

    :param tolerance: seconds a ``telnyx-timestamp`` may differ from the server's clock.
    :param max_body_bytes: the largest body (or query string) accepted.
    :param public_keys: reads a connection's public key (``conn_id -> raw key``).
    :param store_event: stores an asset event (``account_sid, extra -> event id``).
    :param start_sightings: the shared store of exact starts' sightings (built when first needed).
    """

    tolerance: float = DEFAULT_TOLERANCE_SECONDS
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    public_keys: Callable[[str], bytes] = field(default_factory=lambda: PublicKeys().get)
    store_event: Callable[[str, dict[str, str]], int] = store_recording_event
    start_sightings: Callable[[], SightingStore] = shared_store


def settings_from_airflow_config() -> ReceiverSettings:
    """Settings from ``[telnyx] callback_tolerance_seconds`` and ``[telnyx] callback_max_body_bytes``."""
    from airflow.configuration import conf

    return ReceiverSettings(
        tolerance=conf.getfloat("telnyx", "callback_tolerance_seconds", fallback=DEFAULT_TOLERANCE_SECONDS),
        max_body_bytes=conf.getint("telnyx", "callback_max_body_bytes", fallback=DEFAULT_MAX_BODY_BYTES),
    )


def create_app(settings: ReceiverSettings | None = None) -> FastAPI:
    """Build the receiver's FastAPI app (routes relative to where it is mounted).

    :param settings: how to check and store; read from Airflow's configuration when ``None``.
    """
    settings = settings or settings_from_airflow_config()
    replays = ReplayCache(settings.tolerance)
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
            return await _handle(request, settings, replays)
        except Refusal as refusal:
            log.warning("Refused a Telnyx status callback (HTTP %s): %s", refusal.status, refusal)
            return JSONResponse({"detail": refusal.detail}, status_code=refusal.status)

    @app.get(STARTS_ROUTE)
    async def start_sightings(token: str) -> Response:
        status, body = await run_in_threadpool(answer, settings.start_sightings(), token)
        return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})

    return app


async def _handle(request: Request, settings: ReceiverSettings, replays: ReplayCache) -> Response:
    if request.method == "POST":
        content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if content_type != FORM_CONTENT_TYPE:
            raise Refusal(415, f"Status callbacks must be sent as {FORM_CONTENT_TYPE}.")
        payload = await _read_body(request, settings.max_body_bytes)
    else:
        payload = request.scope.get("query_string", b"")
        if len(payload) > settings.max_body_bytes:
            raise Refusal(414, f"The query string is over {settings.max_body_bytes} bytes.")
    conn_id = request.query_params.get("conn_id") or DEFAULT_CONN_ID
    verified = await _verify(request, payload, conn_id, settings)
    try:
        replays.claim(verified)
    except SignatureError as error:
        raise Refusal(401, _UNAUTHORIZED, f"{error} (connection {conn_id!r})") from None
    keep = False
    try:
        fields = _parse_fields(payload, drop_conn_id=request.method == "GET")
        keep = True  # a verified request that cannot be parsed will not parse any better next time
        token = request.query_params.get(TOKEN_PARAMETER)
        if is_token(token):
            keep = False
            await _record_sighting(settings, str(token), fields)
            keep = True
        status = fields["RecordingStatus"]
        if status not in FINAL_STATUSES:
            log.info("Telnyx callback: recording %s is %s; no event.", fields["RecordingSid"], status)
            return Response(status_code=204)
        keep = False
        try:
            event_id = await run_in_threadpool(settings.store_event, fields["AccountSid"], fields)
        except UnknownAssetError as error:
            raise Refusal(
                404,
                f"No DAG uses the Asset {error}: nothing is scheduled on the recordings of this account, "
                "so the event was not stored.",
            ) from None
        keep = True
        log.info(
            "Telnyx callback: recording %s is %s; asset event %s stored.",
            fields["RecordingSid"],
            status,
            event_id,
        )
        return Response(status_code=204)
    finally:
        if not keep:  # nothing was stored: the same request may come again, and must then be accepted
            replays.release(verified)


async def _record_sighting(settings: ReceiverSettings, token: str, fields: dict[str, str]) -> None:
    try:
        new = await run_in_threadpool(record_sighting, settings.start_sightings(), token, fields)
    except Exception as error:  # the store is down: Telnyx may send the callback again
        raise Refusal(503, "The callback could not be stored; send it again.", f"sighting: {error}") from None
    log.info(
        "Telnyx callback: recording %s (%s) carries a start token; sighting %s.",
        fields["RecordingSid"],
        fields["RecordingStatus"],
        "kept" if new else "already kept",
    )


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise Refusal(400, "Malformed Content-Length header.")
        if int(declared) > limit:
            raise Refusal(413, f"The body is over {limit} bytes.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():  # also bounds a chunked body, which declares no length
        size += len(chunk)
        if size > limit:
            raise Refusal(413, f"The body is over {limit} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


async def _verify(
    request: Request, payload: bytes, conn_id: str, settings: ReceiverSettings
) -> VerifiedSignature:
    signature = request.headers.get(SIGNATURE_HEADER)
    timestamp = request.headers.get(TIMESTAMP_HEADER)
    if not signature or not timestamp:
        raise Refusal(401, _UNAUTHORIZED, f"unsigned request (connection {conn_id!r})")
    if len(conn_id) > _MAX_CONN_ID:
        raise Refusal(401, _UNAUTHORIZED, "connection id too long")
    try:
        public_key = await run_in_threadpool(settings.public_keys, conn_id)
    except ReceiverConfigError as error:
        raise Refusal(401, _UNAUTHORIZED, str(error)) from None
    try:
        return verify_signature(
            public_key=public_key,
            payload=payload,
            signature_header=signature,
            timestamp_header=timestamp,
            tolerance=settings.tolerance,
        )
    except SignatureError as error:
        raise Refusal(401, _UNAUTHORIZED, f"{error} (connection {conn_id!r})") from None


def _parse_fields(payload: bytes, *, drop_conn_id: bool) -> dict[str, str]:
    try:
        text = payload.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text), errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise Refusal(400, "The callback is not a UTF-8 form (name=value pairs joined by '&').") from None
    fields: dict[str, str] = {}
    for name, value in pairs:
        if drop_conn_id and name in ("conn_id", TOKEN_PARAMETER):
            continue
        if name in fields:
            raise Refusal(400, f"The field {name!r} appears more than once.")
        fields[name] = value
    missing = [name for name in REQUIRED_FIELDS if not fields.get(name)]
    if missing:
        raise Refusal(400, f"The callback lacks {', '.join(missing)}.")
    try:
        require_identifier("AccountSid", fields["AccountSid"])
    except ValueError:
        raise Refusal(400, "AccountSid is not a valid account id.") from None
    return fields


class TelnyxCallbacksPlugin(AirflowPlugin):
    """Mounts the status-callback receiver on Airflow's API server at ``/telnyx``."""

    name = "telnyx_callbacks"
    fastapi_apps = [  # noqa: RUF012 - the attribute Airflow reads
        {"app": create_app(), "url_prefix": URL_PREFIX, "name": "Telnyx recording status callbacks"}
    ]
