"""What the callback receiver asks of Airflow: a connection's public key, and storing an asset event.

Both run in the API server, with its database session (blocking: the receiver calls them in a worker
thread). The asset event goes through Airflow's own machinery, as ``POST /api/v2/assets/events`` does:
:meth:`AssetManager.register_asset_change` records the event and queues the DAG runs scheduled on the Asset.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from telnyx_provider.assets import recordings_asset_uri
from telnyx_provider.signatures import load_public_key

log = logging.getLogger(__name__)

#: Seconds a public key read from a connection is reused before the connection is read again.
KEY_CACHE_SECONDS = 30.0


class ReceiverConfigError(Exception):
    """The connection named by a callback is unknown, or has no usable ``public_key``.

    The message is for the API server's log only: the sender gets the same 401 as for a bad signature,
    so the receiver does not tell the world which connections exist.
    """


class UnknownAssetError(Exception):
    """No DAG uses the Asset the callback's account maps to (no active Asset with that URI)."""


class PublicKeys:
    """The Ed25519 public key of each Telnyx connection, read from its extra (``public_key``).

    Keys are kept :data:`KEY_CACHE_SECONDS`, so a flood of forged callbacks does not turn into a flood of
    connection lookups; a changed key takes effect within that time. Failed lookups are not cached.
    """

    def __init__(self, ttl: float = KEY_CACHE_SECONDS) -> None:
        self._ttl = ttl
        self._keys: dict[str, tuple[float, bytes]] = {}
        self._lock = threading.Lock()

    def get(self, conn_id: str) -> bytes:
        """The raw public key of ``conn_id``.

        :raises ReceiverConfigError: the connection does not exist, or its ``public_key`` is missing or bad.
        """
        now = time.monotonic()
        with self._lock:
            cached = self._keys.get(conn_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        key = load_connection_key(conn_id)
        with self._lock:
            self._keys[conn_id] = (now + self._ttl, key)
        return key


def load_connection_key(conn_id: str) -> bytes:
    """Read and decode the ``public_key`` in the extra of the Airflow connection ``conn_id``.

    :raises ReceiverConfigError: unknown connection, or no valid ``public_key`` in its extra.
    """
    from airflow.exceptions import AirflowNotFoundException  # type: ignore[attr-defined]
    from airflow.models.connection import Connection

    try:
        connection = Connection.get_connection_from_secrets(conn_id)
    except AirflowNotFoundException:
        raise ReceiverConfigError(f"no connection {conn_id!r}") from None
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
        return load_public_key(encoded)
    except ValueError as error:
        raise ReceiverConfigError(f"connection {conn_id!r}: 'public_key' in its extra: {error}") from None


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
