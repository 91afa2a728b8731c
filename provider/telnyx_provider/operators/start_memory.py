"""What a recording start remembers across task retries: Airflow's durable task state (3.3+).

``context["task_state_store"]`` (AIP-103, the store behind Airflow's ``ResumableJobMixin``) outlives a try,
a crashed worker included. :class:`StartMemory` keeps one JSON value in it for the start operator: the
call's recording SIDs *before* the start was sent (the snapshot), then the recording's SID right after,
and how the try that owned the recording ended. A retry reads it back, so it resumes its own recording,
or knows it must start a new one, without guessing. The window Airflow's mixin leaves open (a worker that
dies after the start returned and before the SID is stored) is closed by the snapshot: a new matching
recording that is not in it is this task's.

On Airflow 3.1/3.2 there is no such store: :meth:`StartMemory.of` returns ``None`` and the operator falls
back to a weaker rule (see its docstring).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

    from airflow.sdk import Context

#: The task state store key the start operator uses.
STATE_KEY = "telnyx_recording_start"


@dataclass(frozen=True)
class StartRecord:
    """One start, as stored.

    :param call_sid: the call the start was for.
    :param snapshot: the call's recording SIDs before the start was first sent.
    :param recording_sid: the recording the start got (``None`` until the start returned).
    :param stopped_by: ``"timeout"`` or ``"kill"`` when this task stopped the recording itself.
    :param deferred: a try handed the wait to the triggerer and has not come back from it (yet).
    """

    call_sid: str
    snapshot: list[str] = field(default_factory=list)
    recording_sid: str | None = None
    stopped_by: str | None = None
    deferred: bool = False

    @classmethod
    def from_json(cls, value: object) -> StartRecord | None:
        """The record stored as ``value``, or ``None`` if it is not one (absent, or another shape)."""
        if not isinstance(value, dict) or not isinstance(value.get("call_sid"), str):
            return None
        snapshot = value.get("snapshot")
        return cls(
            call_sid=value["call_sid"],
            snapshot=[str(sid) for sid in snapshot] if isinstance(snapshot, list) else [],
            recording_sid=_str_or_none(value.get("recording_sid")),
            stopped_by=_str_or_none(value.get("stopped_by")),
            deferred=bool(value.get("deferred", False)),
        )


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


class StartMemory:
    """The start operator's record in the task state store; every change is written at once.

    :param store: the ``task_state_store`` accessor of the running task.
    """

    def __init__(self, store: Any) -> None:
        self._store = store

    @classmethod
    def of(cls, context: Context | Mapping[str, Any]) -> StartMemory | None:
        """The memory of the running task, or ``None`` where Airflow has no task state store (< 3.3)."""
        store = task_state_store(context)
        return None if store is None else cls(store)

    def load(self) -> StartRecord | None:
        """What an earlier try stored, if anything."""
        return StartRecord.from_json(self._store.get(STATE_KEY))

    def save(self, record: StartRecord) -> StartRecord:
        """Store ``record`` (before the next request goes out) and return it."""
        self._store.set(STATE_KEY, asdict(record))
        return record

    def update(self, record: StartRecord, **changes: Any) -> StartRecord:
        """Store ``record`` with ``changes`` and return the new record."""
        return self.save(replace(record, **changes))


def task_state_store(context: Context | Mapping[str, Any]) -> Any:
    """The running task's ``task_state_store`` accessor (``get``/``set``), or ``None`` before Airflow 3.3."""
    store = context.get("task_state_store")
    if (
        store is None
        or not callable(getattr(store, "get", None))
        or not callable(getattr(store, "set", None))
    ):
        return None
    return store
