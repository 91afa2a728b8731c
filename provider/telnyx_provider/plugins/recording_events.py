"""What the callback receiver asks of Airflow: a connection's key and account, and storing an asset event.

Both run in the API server, with its database session (blocking: the receiver calls them in a worker
thread). The asset event goes through Airflow's own machinery, as ``POST /api/v2/assets/events`` does:
:meth:`AssetManager.register_asset_change` records the event and queues the DAG runs scheduled on the Asset.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from telnyx_provider.assets import recordings_asset_uri
from telnyx_provider.signatures import load_public_key

if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger(__name__)

#: Seconds a connection's key (or the failure to read one) is reused before the connection is read again.
KEY_CACHE_SECONDS = 30.0
#: Connections' keys, and failed lookups, kept at most (each on its own), the least recently used dropped
#: first: a flood of made-up connection ids cannot grow the cache without bound, nor push a key out.
KEY_CACHE_ENTRIES = 1024
#: The only connection type whose key may verify a callback.
CONNECTION_TYPE = "telnyx"


class ReceiverConfigError(Exception):
    """The connection named by a callback is unknown, not a ``telnyx`` connection, or lacks a usable
    ``public_key`` or login (account SID).

    The message is for the API server's log only: the sender gets the same 401 as for a bad signature,
    so the receiver does not tell the world which connections exist.
    """


class UnknownAssetError(Exception):
    """No DAG uses the Asset the callback's account maps to (no active Asset with that URI)."""


@dataclass(frozen=True)
class CallbackKey:
    """What a connection says about the callbacks it verifies.

    :param conn_id: the connection.
    :param public_key: the account's raw Ed25519 public key (the extra's ``public_key``).
    :param account_sid: the connection's login: the only ``AccountSid`` its key may vouch for.
    :param api_key: the connection's password (the API key): it authenticates an exact start's
        settlement (:mod:`~telnyx_provider.plugins.start_settlements`); never in a repr or a log line.
    """

    conn_id: str
    public_key: bytes
    account_sid: str
    api_key: str | None = field(default=None, repr=False)


class ConnectionKeys:
    """The :class:`CallbackKey` of each Telnyx connection, read through Airflow's secrets backends.

    Keys and failed lookups are both kept :data:`KEY_CACHE_SECONDS` (at most :data:`KEY_CACHE_ENTRIES` of
    each, in separate caches: failed lookups of made-up ids never push a key out), so a flood of callbacks,
    forged or not, does not turn into a flood of secrets-backend lookups; a changed key, or a connection
    created after a failed lookup, takes effect within that time. Per process: each API-server worker has
    its own (a cache of the secrets backends, not state to share). The receiver asks :meth:`cached` first,
    and reads a connection it has had a key of (:meth:`known`) apart from ids never seen.

    :param ttl: seconds an answer is reused.
    :param load: reads one connection (:func:`load_connection_key`).
    :param clock: monotonic seconds.
    """

    def __init__(
        self,
        ttl: float = KEY_CACHE_SECONDS,
        *,
        load: Callable[[str], CallbackKey] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._load = load or load_connection_key
        self._clock = clock
        self._keys: OrderedDict[str, tuple[float, CallbackKey]] = OrderedDict()
        self._failures: OrderedDict[str, tuple[float, ReceiverConfigError]] = OrderedDict()
        self._lock = threading.Lock()

    def cached(self, conn_id: str) -> CallbackKey | ReceiverConfigError | None:
        """The answer for ``conn_id`` while it is fresh (a key, or the failure to read one), else ``None``;
        never reads the connection."""
        now = self._clock()
        with self._lock:
            for answers in (self._keys, self._failures):
                entry = answers.get(conn_id)
                if entry is not None and entry[0] > now:
                    answers.move_to_end(conn_id)
                    return entry[1]
        return None

    def known(self, conn_id: str) -> bool:
        """Whether this process has read a key of ``conn_id`` (still cached, fresh or not)."""
        with self._lock:
            return conn_id in self._keys

    def get(self, conn_id: str) -> CallbackKey:
        """The key of ``conn_id`` (from the cache while it is fresh).

        :raises ReceiverConfigError: the connection is unknown, of another type, or lacks a valid
            ``public_key`` or login (also when that was found within the cache time).
        """
        now = self._clock()
        answer = self.cached(conn_id)
        if isinstance(answer, ReceiverConfigError):
            raise ReceiverConfigError(f"{answer} (cached)")
        if answer is not None:
            return answer
        try:
            key = self._load(conn_id)
        except ReceiverConfigError as error:
            self._keep(self._failures, conn_id, (now + self._ttl, error), drop=self._keys)
            raise
        self._keep(self._keys, conn_id, (now + self._ttl, key), drop=self._failures)
        return key

    def _keep(
        self, answers: OrderedDict[str, Any], conn_id: str, entry: Any, *, drop: OrderedDict[str, Any]
    ) -> None:
        with self._lock:
            drop.pop(conn_id, None)
            answers[conn_id] = entry
            answers.move_to_end(conn_id)
            while len(answers) > KEY_CACHE_ENTRIES:
                answers.popitem(last=False)


#: The name this class had when it returned the public key alone.
PublicKeys = ConnectionKeys


def load_connection_key(conn_id: str) -> CallbackKey:
    """Read the Airflow connection ``conn_id``: a ``telnyx`` connection with a login (the account SID) and
    a ``public_key`` in its extra.

    :raises ReceiverConfigError: unknown connection, another type, no login, no valid ``public_key``.
    """
    from airflow.exceptions import AirflowNotFoundException  # type: ignore[attr-defined]
    from airflow.models.connection import Connection

    try:
        connection = Connection.get_connection_from_secrets(conn_id)
    except AirflowNotFoundException:
        raise ReceiverConfigError(f"no connection {conn_id!r}") from None
    if connection.conn_type != CONNECTION_TYPE:
        raise ReceiverConfigError(
            f"connection {conn_id!r} is of type {connection.conn_type!r}, not {CONNECTION_TYPE!r}: only a "
            "Telnyx connection's key verifies callbacks"
        )
    try:
        extra: Any = connection.extra_dejson
    except Exception:  # an unreadable extra is a configuration error like any other
        extra = {}
    encoded = extra.get("public_key") if isinstance(extra, dict) else None
    if encoded is None:
        raise ReceiverConfigError(
            f"connection {conn_id!r} has no 'public_key' in its extra: set it to the Ed25519 public key "
            "of the Telnyx account (base64, from the Telnyx portal) to accept its callbacks"
        )
    try:
        public_key = load_public_key(encoded)
    except ValueError as error:
        raise ReceiverConfigError(f"connection {conn_id!r}: 'public_key' in its extra: {error}") from None
    account_sid = (connection.login or "").strip()
    if not account_sid:
        raise ReceiverConfigError(
            f"connection {conn_id!r} has no login: set it to the account SID whose callbacks its key "
            "verifies (a callback's AccountSid must equal it)"
        )
    api_key = (connection.password or "").strip() or None
    return CallbackKey(conn_id=conn_id, public_key=public_key, account_sid=account_sid, api_key=api_key)


def store_recording_event(account_sid: str, extra: dict[str, str]) -> int:
    """Record an event of the Asset ``telnyx://{account_sid}/recordings`` with ``extra``; return its id.

    :raises UnknownAssetError: no DAG uses that Asset (it is unknown, or no longer active).
    """
    from airflow.assets.manager import asset_manager
    from airflow.models.asset import AssetActive, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    uri = recordings_asset_uri(account_sid)
    with create_session() as session:
        # Only an active Asset (one a DAG still declares) takes events; a user may have named it freely.
        asset = session.scalar(
            select(AssetModel)
            .join(AssetActive, (AssetActive.name == AssetModel.name) & (AssetActive.uri == AssetModel.uri))
            .where(AssetModel.uri == uri)
            .limit(1)
        )
        if asset is None:
            raise UnknownAssetError(uri)
        event = asset_manager.register_asset_change(asset=asset, extra=extra, session=session)
        if event is None:
            raise UnknownAssetError(uri)
        session.flush()
        return int(event.id)
