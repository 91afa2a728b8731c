"""What an archive run has stored so far, kept in Airflow's durable task state store (3.3+).

``context["task_state_store"]`` outlives a try, a killed worker included (AIP-103). The archive operator
records each stored recording there as soon as its copy is in place, before the next one is counted, so a
retry after a crash knows what the dead try stored (and checks each copy again before trusting it) although
no manifest was written. Entries go in chunks of :data:`CHUNK_SIZE` under keys
``telnyx_archive:{identity}:{n}``: a write carries at most one chunk, whatever the interval's size (and at
most :data:`CHUNK_BYTES`, whatever the paths' length), and a reader takes chunks until the first missing
key. ``identity`` hashes the account, the interval, the
destination and the layout, so a run with other arguments never reads another's progress.

On Airflow 3.1/3.2 there is no such store: :meth:`ArchiveProgress.of` returns ``None`` and a killed try's
work is found again through the manifest of the last try that ended (or redone, overwriting with the same
bytes).
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from telnyx_provider.archive_manifest import ManifestError, check_entry

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from airflow.sdk import Context

    from telnyx_provider.archive_manifest import Manifest

KEY_PREFIX = "telnyx_archive"
#: Entries per state store value, at most.
CHUNK_SIZE = 50
#: Bytes (JSON) per state store value, at most: half of Airflow's default ``[state_store]
#: max_value_storage_bytes`` (64 kB), whatever the paths' length (a chunk closes early).
CHUNK_BYTES = 32 * 1024
#: An entry is stored as a list in this order (half the bytes of a dict).
_FIELDS = (
    "recording_sid",
    "call_sid",
    "path",
    "size",
    "sha256",
    "content_type",
    "duration",
    "date_created",
    "source",
)


def identity(account_sid: str, interval_name: str, destination: str, layout: str) -> str:
    """A short hash naming one archive configuration (its progress keys)."""
    text = "\n".join((account_sid, interval_name, destination, layout))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


class ArchiveProgress:
    """The archive's progress in the task state store: stored recordings, chunk by chunk.

    :param store: the ``task_state_store`` accessor of the running task.
    :param key: ``telnyx_archive:{identity}``.
    """

    def __init__(self, store: Any, key: str) -> None:
        self._store = store
        self._key = key
        self._chunks: list[list[list[Any]]] = []
        self._last_bytes = 0

    @classmethod
    def of(cls, context: Context | Mapping[str, Any], run_identity: str) -> ArchiveProgress | None:
        """The progress of the running task for this configuration, or ``None`` before Airflow 3.3."""
        from telnyx_provider.operators.start_memory import task_state_store

        store = task_state_store(context)
        return None if store is None else cls(store, f"{KEY_PREFIX}:{run_identity}")

    def load(self) -> list[dict[str, Any]]:
        """Every entry an earlier try recorded (a malformed one is dropped: its recording is copied again)."""
        entries: list[dict[str, Any]] = []
        self._chunks = []
        while isinstance(chunk := self._store.get(f"{self._key}:{len(self._chunks)}"), list):
            self._chunks.append(chunk)
            for row in chunk:
                if isinstance(row, list) and len(row) == len(_FIELDS):
                    try:
                        entries.append(
                            check_entry({**dict(zip(_FIELDS, row, strict=True)), "deletion": None})
                        )
                    except ManifestError:
                        continue
        self._last_bytes = len(json.dumps(self._chunks[-1])) if self._chunks else 0
        return entries

    def recover(self, manifest: Manifest) -> int:
        """Load the entries and add those the manifest lacks (a killed try's work); returns how many.

        The manifest wins for a recording it names: it may record a later state (a deletion).
        """
        recovered = [entry for entry in self.load() if entry["recording_sid"] not in manifest.archived]
        for entry in recovered:
            manifest.add_archived(entry)
        return len(recovered)

    def add(self, entries: Iterable[Mapping[str, Any]]) -> None:
        """Record stored recordings (one write per chunk touched), before the run goes on."""
        touched: set[int] = set()
        for entry in entries:
            row = [entry.get(name) for name in _FIELDS]
            size = len(json.dumps(row)) + 2  # and its separator
            full = self._chunks and (
                len(self._chunks[-1]) >= CHUNK_SIZE or self._last_bytes + size > CHUNK_BYTES
            )
            if not self._chunks or full:
                self._chunks.append([])
                self._last_bytes = 2  # the brackets
            self._chunks[-1].append(row)
            self._last_bytes += size
            touched.add(len(self._chunks) - 1)
        for index in sorted(touched):
            self._store.set(f"{self._key}:{index}", self._chunks[index])
