"""The callback receiver's shared state: a small table of the provider's own in Airflow's metadata database.

Every API-server worker (``airflow api-server --workers N``), and every API server of a deployment, reads
and writes the same rows, and they outlive a restart. The receiver keeps there what must hold across
workers: the signatures it accepted (replay protection, namespace ``replay``), and whatever a later step
needs to remember (another module's namespace). Rows carry an expiry; an expired row counts as absent.

The table, ``telnyx_receiver_state`` (``namespace``, ``key``: the primary key; ``value``: JSON text;
``expires_at``: Unix seconds), is created on first use if it is missing; two workers creating it at once
is tolerated. Airflow's migrations do not know it: ``airflow db reset`` leaves it in place (harmless: every
row expires), and dropping it by hand is safe while no API server runs.

:meth:`ReceiverStore.add_if_absent` is atomic across processes: of concurrent callers adding the same key,
exactly one gets ``True``. It relies on the primary key (an insert that conflicts fails) and on a
conditional update for taking over an expired row (``... WHERE expires_at <= now``: of two takers, the
database lets one update the row; the other then finds it unexpired). Works on SQLite, PostgreSQL and
MySQL, with SQLAlchemy 2.0 and 2.1.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Column,
    Float,
    MetaData,
    String,
    Table,
    Text,
    delete,
    exc,
    insert,
    inspect,
    select,
    update,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from sqlalchemy.engine import Connection, Engine

__all__ = [
    "MAX_KEY_LENGTH",
    "MAX_NAMESPACE_LENGTH",
    "PURGE_INTERVAL",
    "TABLE_NAME",
    "ReceiverStore",
    "ReceiverStoreError",
    "receiver_store",
]

log = logging.getLogger(__name__)

TABLE_NAME = "telnyx_receiver_state"
#: The longest namespace and key (a key is e.g. a signature's SHA-256 in hex, or a token).
MAX_NAMESPACE_LENGTH = 64
MAX_KEY_LENGTH = 255
#: Seconds between two purges of expired rows that :meth:`ReceiverStore.add_if_absent` does by itself.
PURGE_INTERVAL = 60.0

_metadata = MetaData()
_state_table = Table(
    TABLE_NAME,
    _metadata,
    Column("namespace", String(MAX_NAMESPACE_LENGTH), primary_key=True),
    Column("key", String(MAX_KEY_LENGTH), primary_key=True),
    Column("value", Text, nullable=False),
    Column("expires_at", Float, nullable=False, index=True),
)


class ReceiverStoreError(Exception):
    """The shared store could not be read or written (the database is unreachable, or refused)."""


class ReceiverStore:
    """Expiring JSON values by ``(namespace, key)``, shared by every process that uses the same database.

    :param engine: the database; Airflow's metadata database (``airflow.settings.engine``) when ``None``.
    :param clock: the current Unix time (``time.time``). Expiries are absolute times, and any process may
        purge what its own clock calls expired: a value that must outlive the clocks' differences needs a
        ttl that covers them (the receiver's replay rows add
        ``callback_checks.MAX_CLOCK_SKEW``).
    """

    def __init__(self, engine: Engine | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self._engine = engine
        self._clock = clock
        self._table_ready = False
        self._lock = threading.Lock()
        self._next_purge = 0.0

    @property
    def engine(self) -> Engine:
        """The database engine in use."""
        if self._engine is None:
            from airflow import settings

            if settings.engine is None:  # pragma: no cover - the API server has always configured it
                settings.configure_orm()
            self._engine = settings.engine
        assert self._engine is not None
        return self._engine

    def add_if_absent(self, namespace: str, key: str, value: dict[str, Any], ttl_seconds: float) -> bool:
        """Store ``value`` under ``(namespace, key)`` for ``ttl_seconds`` unless an unexpired value is there.

        :param namespace: whose values these are (``replay``, ...).
        :param key: the value's key within the namespace.
        :param value: a JSON-serialisable dict.
        :param ttl_seconds: seconds until the value expires (it then counts as absent).
        :return: ``True`` if this call stored the value; ``False`` if an unexpired value was already there.
            Of several concurrent callers (threads, workers, hosts) adding the same key, exactly one
            gets ``True``.
        :raises ValueError: a namespace or key too long or empty, a value that is not a JSON dict, a ttl <= 0.
        :raises ReceiverStoreError: the database failed.
        """
        _check_name(namespace, key)
        text = _dump(value)
        if not ttl_seconds > 0:
            raise ValueError(f"ttl_seconds must be > 0, not {ttl_seconds!r}")
        now = self._clock()
        row = {"namespace": namespace, "key": key, "value": text, "expires_at": now + ttl_seconds}
        self._maybe_purge(now)
        with self._connection() as conn:
            try:
                with conn.begin():
                    conn.execute(insert(_state_table).values(**row))
                return True
            except exc.IntegrityError:
                pass  # a row is there: take it over only if it has expired
            with conn.begin():
                taken = conn.execute(
                    update(_state_table)
                    .where(
                        _state_table.c.namespace == namespace,
                        _state_table.c.key == key,
                        _state_table.c.expires_at <= now,
                    )
                    .values(value=text, expires_at=row["expires_at"])
                )
            return bool(taken.rowcount == 1)

    def get(self, namespace: str, key: str) -> dict[str, Any] | None:
        """The value under ``(namespace, key)``, or ``None`` when there is none or it has expired.

        :raises ReceiverStoreError: the database failed.
        """
        _check_name(namespace, key)
        with self._connection() as conn:
            text = conn.execute(
                select(_state_table.c.value).where(
                    _state_table.c.namespace == namespace,
                    _state_table.c.key == key,
                    _state_table.c.expires_at > self._clock(),
                )
            ).scalar_one_or_none()
        return None if text is None else _load(text)

    def list_prefix(self, namespace: str, prefix: str) -> list[tuple[str, dict[str, Any]]]:
        """The unexpired ``(key, value)`` pairs of ``namespace`` whose key starts with ``prefix``, by key.

        :raises ReceiverStoreError: the database failed.
        """
        _check_name(namespace, prefix or "-")
        with self._connection() as conn:
            rows = conn.execute(
                select(_state_table.c.key, _state_table.c.value)
                .where(
                    _state_table.c.namespace == namespace,
                    _state_table.c.key.startswith(prefix, autoescape=True),
                    _state_table.c.expires_at > self._clock(),
                )
                .order_by(_state_table.c.key)
            ).all()
        return [(str(key), _load(text)) for key, text in rows]

    def delete(self, namespace: str, key: str) -> bool:
        """Remove ``(namespace, key)``; ``True`` if a row was there (expired or not).

        :raises ReceiverStoreError: the database failed.
        """
        _check_name(namespace, key)
        with self._connection() as conn, conn.begin():
            result = conn.execute(
                delete(_state_table).where(_state_table.c.namespace == namespace, _state_table.c.key == key)
            )
        return bool(result.rowcount)

    def purge_expired(self) -> int:
        """Delete every expired row; return how many.

        :raises ReceiverStoreError: the database failed.
        """
        with self._connection() as conn, conn.begin():
            result = conn.execute(delete(_state_table).where(_state_table.c.expires_at <= self._clock()))
        return int(result.rowcount or 0)

    def _maybe_purge(self, now: float) -> None:
        with self._lock:
            if now < self._next_purge:
                return
            self._next_purge = now + PURGE_INTERVAL
        try:
            purged = self.purge_expired()
        except ReceiverStoreError as error:  # a purge is housekeeping: the next one tries again
            log.warning("Could not purge expired rows of %s: %s", TABLE_NAME, error)
            return
        if purged:
            log.debug("Purged %s expired row(s) of %s.", purged, TABLE_NAME)

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        try:
            self._ensure_table()
            with self.engine.connect() as conn:
                yield conn
        except exc.SQLAlchemyError as error:
            raise ReceiverStoreError(f"the receiver's shared state ({TABLE_NAME}): {error}") from error

    def _ensure_table(self) -> None:
        if self._table_ready:
            return
        with self._lock:
            if self._table_ready:
                return
            try:
                _state_table.create(self.engine, checkfirst=True)
            except (exc.OperationalError, exc.ProgrammingError, exc.IntegrityError):
                # Another worker created it between our check and our CREATE: fine if it is there now.
                if not inspect(self.engine).has_table(TABLE_NAME):
                    raise
            self._table_ready = True


def _check_name(namespace: str, key: str) -> None:
    for what, text, limit in (("namespace", namespace, MAX_NAMESPACE_LENGTH), ("key", key, MAX_KEY_LENGTH)):
        if not isinstance(text, str) or not text or len(text) > limit:
            raise ValueError(f"a {what} must be a non-empty string of at most {limit} characters")


def _dump(value: dict[str, Any]) -> str:
    if not isinstance(value, dict):
        raise ValueError("a stored value must be a dict")
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError) as error:
        raise ValueError(f"a stored value must be JSON-serialisable: {error}") from None


def _load(text: str) -> dict[str, Any]:
    value = json.loads(text)
    return value if isinstance(value, dict) else {"value": value}


_process_store: ReceiverStore | None = None
_process_store_lock = threading.Lock()


def receiver_store() -> ReceiverStore:
    """This process's store: Airflow's metadata database (one engine per process, as Airflow's own)."""
    global _process_store
    with _process_store_lock:
        if _process_store is None:
            _process_store = ReceiverStore()
        return _process_store
