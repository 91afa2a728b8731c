"""The receiver stops superseded recordings itself, also once the start that superseded them has ended.

An exact start sent more than once (its reply lost, no callback within ``adoption_wait``) may have made a
recording with an earlier attempt whose callback comes late — after the start settled on another
recording, even after its task ended. The start then **settles**: ``POST /telnyx/starts/settled`` names the
call, the recording it kept and every token it sent (see :mod:`telnyx_provider.exact_start`). The receiver
keeps one row per token in its shared store (every API-server worker sees them). When a verified callback
carrying one of those tokens names *another* recording of the same call while it still records, the
receiver stops it with the connection's API key: it is the start's (the token proves it) and superseded.

Who acts, and why one always does: the start writes its settlement, then reads the sightings; the receiver
writes a sighting, then reads the settlements. Whichever write comes second, its reader sees the first, so a
superseded recording is stopped by the start (seen before it settled) or by the receiver (seen after).

A settlement must carry an HMAC (SHA-256) of its body under the API key of the connection named by
``?conn_id=`` (default ``telnyx_default``): only a holder of the key can write settlements. Anything else
is a 401 (the same body as the callback route's), with nothing stored. A superseded recording that ran to
its end because its ``in-progress`` callback never came is logged as such when its final callback comes.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from typing import TYPE_CHECKING, Any

from telnyx_provider.exact_start import MAX_SETTLED_TOKENS, TOKEN_PARAMETER, is_token, settlement_mac
from telnyx_provider.plugins.callback_checks import UNAUTHORIZED, Refusal
from telnyx_provider.plugins.recording_events import ReceiverConfigError
from telnyx_provider.plugins.start_tokens import DEFAULT_TTL_SECONDS, sightings

if TYPE_CHECKING:
    from collections.abc import Callable

    from telnyx_provider.plugins.callback_checks import VerifiedCallback
    from telnyx_provider.plugins.receiver_store import ReceiverStore
    from telnyx_provider.plugins.recording_events import CallbackKey

log = logging.getLogger(__name__)

#: The receiver store's namespace for settlements (one row per token and kept recording).
NAMESPACE = "start_settled"
#: Statuses of a recording still capturing audio: a superseded one is stopped.
ACTIVE_STATUSES = frozenset({"in-progress", "paused"})
FINAL_STATUSES = frozenset({"completed", "absent"})
#: Seconds the receiver's stop of a superseded recording may take, retries included.
STOP_BUDGET = 10.0
_CONN_ID = re.compile(r"[\w#!()\-.:/\\]{1,250}")
_SID = re.compile(r"[\w:.\-]{1,255}")


def settle_answer(
    store: ReceiverStore,
    connection_keys: Callable[[str], CallbackKey],
    conn_id: str,
    body: bytes,
    mac: str | None,
) -> tuple[int, dict[str, Any]]:
    """Check and keep a settlement; the HTTP status and JSON body of ``POST /starts/settled``.

    :param store: the shared store.
    :param connection_keys: reads a connection's keys (its API key authenticates the settlement).
    :param conn_id: the connection named by the request.
    :param body: the raw body (``settlement_body``).
    :param mac: the ``telnyx-provider-mac`` header.
    """
    if not _CONN_ID.fullmatch(conn_id) or not mac:
        return 401, {"detail": UNAUTHORIZED}
    try:
        key = connection_keys(conn_id)
    except ReceiverConfigError as error:
        log.warning("Refused a start settlement: %s", error)
        return 401, {"detail": UNAUTHORIZED}
    except Exception as error:  # a secrets backend or the database failing
        log.warning("Could not check a start settlement (connection %r): %s", conn_id, type(error).__name__)
        return 503, {"detail": "The settlement cannot be checked right now; send it again later."}
    if not key.api_key or not hmac.compare_digest(mac, settlement_mac(key.api_key, body)):
        log.warning("Refused a start settlement: its MAC is not the one of connection %r's API key", conn_id)
        return 401, {"detail": UNAUTHORIZED}
    settlement = _parse(body)
    if settlement is None:
        return 400, {"detail": "A settlement is {call_sid, kept, tokens: [1 to 64 start tokens]}."}
    call_sid, kept, tokens = settlement
    value = {"call_sid": call_sid, "kept": kept, "conn_id": conn_id}
    try:
        for token in tokens:
            store.add_if_absent(NAMESPACE, f"{token}/{kept}", value, DEFAULT_TTL_SECONDS)
    except Exception as error:
        log.warning("Could not store a start settlement: %s", error)
        return 503, {"detail": "The settlement could not be stored; send it again."}
    log.info("A start on call %s settled on recording %s (%s token(s)).", call_sid, kept, len(tokens))
    return 200, {"settled": len(tokens)}


def _parse(body: bytes) -> tuple[str, str, list[str]] | None:
    try:
        value = json.loads(body)
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    call_sid, kept, tokens = value.get("call_sid"), value.get("kept"), value.get("tokens")
    if not (isinstance(call_sid, str) and _SID.fullmatch(call_sid)):
        return None
    if not (isinstance(kept, str) and _SID.fullmatch(kept)):
        return None
    if not isinstance(tokens, list) or not 1 <= len(tokens) <= MAX_SETTLED_TOKENS:
        return None
    if not all(is_token(token) for token in tokens):
        return None
    return call_sid, kept, list(dict.fromkeys(tokens))


def settled_on(store: ReceiverStore, token: str) -> list[dict[str, Any]]:
    """The settlements naming ``token``: ``{"call_sid", "kept", "conn_id"}`` each."""
    return [value for _key, value in store.list_prefix(NAMESPACE, f"{token}/")]


def supersede_step(
    store: ReceiverStore, stop: Callable[[str, str, str, str], bool | None]
) -> Callable[[VerifiedCallback], None]:
    """The receiver's step after a sighting is kept: stop the recording if its start settled on another.

    A stop that fails refuses the callback with a 503 (its sighting is kept; Telnyx may send it again, and
    the step then tries again).
    """

    def check(callback: VerifiedCallback) -> None:
        token = callback.url_parameters.get(TOKEN_PARAMETER)
        if not is_token(token):
            return
        assert token is not None
        fields = callback.fields
        sid, call, status = fields["RecordingSid"], fields.get("CallSid", ""), fields["RecordingStatus"]
        settlements = settled_on(store, token)
        if not settlements or any(item.get("kept") == sid for item in settlements):
            return
        kept = [item for item in settlements if item.get("call_sid") == call]
        if not kept:
            log.warning(
                "Recording %s carries a start token whose start settled on call %s, not on its call %s: "
                "ignored.",
                sid,
                settlements[0].get("call_sid"),
                call,
            )
            return
        if status in ACTIVE_STATUSES:
            try:
                stopped = stop(callback.conn_id, callback.account_sid, call, sid)
            except Exception as error:
                raise Refusal(
                    503,
                    "The callback could not be handled; send it again.",
                    f"stopping superseded recording {sid}: {error}",
                ) from None
            log.warning(
                "%s recording %s on call %s: superseded (an earlier attempt of a start that settled on "
                "recording %s; the start token proves it the start's).",
                "Stopped" if stopped is not False else "Nothing to stop: it had already ended,",
                sid,
                call,
                kept[0].get("kept"),
            )
        elif status in FINAL_STATUSES and not _seen_active(store, token, sid):
            log.warning(
                "Recording %s on call %s, superseded by recording %s, ran until it ended (%s): its "
                "in-progress callback never came, so nothing could stop it.",
                sid,
                call,
                kept[0].get("kept"),
                status,
            )

    return check


def _seen_active(store: ReceiverStore, token: str, sid: str) -> bool:
    return any(
        s.get("recording_sid") == sid and s.get("status") in ACTIVE_STATUSES for s in sightings(store, token)
    )


def stop_with_connection(conn_id: str, account_sid: str, call_sid: str, recording_sid: str) -> bool:
    """Stop a recording with the API key of the Airflow connection ``conn_id`` (read on the API server).

    :return: ``True`` once stopped; ``False`` when it had ended already (a 422: nothing to stop).

    :raises TelnyxApiError: the stop failed within ``STOP_BUDGET`` seconds.
    """
    from telnyx_provider.errors import TelnyxApiError
    from telnyx_provider.hooks.recording import RecordingHook

    class ServerHook(RecordingHook):
        """Reads its connection as the API server does (the receiver's own lookups)."""

        @classmethod
        def get_connection(cls, conn_id: str) -> Any:
            from airflow.models.connection import Connection

            return Connection.get_connection_from_secrets(conn_id)

    hook = ServerHook(
        telnyx_conn_id=conn_id,
        max_retries=4,
        retry_max_wait=2.0,
        retry_budget=STOP_BUDGET,
        request_timeout=5.0,
    )
    try:
        hook.stop_call_recording(call_sid, recording_sid, account_sid=account_sid)
    except TelnyxApiError as error:
        if error.status != 422:
            raise
        return False
    finally:
        hook.close()
    return True
