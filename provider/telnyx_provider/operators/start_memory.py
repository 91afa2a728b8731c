"""What a recording start remembers across task retries: Airflow's durable task state (3.3+).

``context["task_state_store"]`` (AIP-103, the store behind Airflow's ``ResumableJobMixin``) outlives a try,
a crashed worker included. :class:`StartMemory` keeps one JSON value in it for the start operator, written
*before* each step it describes, so a retry knows what an earlier try did — and what it cannot know:

========== ========================================================================================
state      meaning
========== ========================================================================================
prepared   the snapshot was taken (default mode) or the start is about to be prepared; nothing sent
sending    a POST is about to be sent (its token is stored first, in exact mode): it may have started
refused    the last POST got a definite no (a 4xx, 429 included; a connection that never opened)
reply_lost the last POST may have started a recording: its reply was lost (reset, 5xx, timeout)
started    the recording's SID is known (``recording_sid``)
========== ========================================================================================

A stop the task sends (its timeout, a kill) is written as ``stop_requested`` before it is sent, and as
``stopped_by`` only once the service confirmed it: an unconfirmed stop is retried by the next try first.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

    from airflow.sdk import Context

    from telnyx_provider.errors import TelnyxApiError

#: The task state store key the start operator uses.
STATE_KEY = "telnyx_recording_start"
STATES = ("prepared", "sending", "refused", "reply_lost", "started")


@dataclass(frozen=True)
class StartRecord:
    """One start, as stored.

    :param call_sid: the call the start was for.
    :param state: how far the start got (see the module docstring).
    :param snapshot: the call's recording SIDs before the start was first sent (default mode).
    :param tokens: the start tokens of every POST sent so far (exact mode), oldest first.
    :param recording_sid: the recording the start got (``None`` until known).
    :param stop_requested: ``"timeout"`` or ``"kill"`` while a stop this task sent is not confirmed.
    :param stopped_by: ``"timeout"`` or ``"kill"`` once the service confirmed this task's stop.
    """

    call_sid: str
    state: str = "prepared"
    snapshot: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    recording_sid: str | None = None
    stop_requested: str | None = None
    stopped_by: str | None = None

    @classmethod
    def from_json(cls, value: object) -> StartRecord | None:
        """The record stored as ``value``, or ``None`` if it is not one (absent, or another shape).

        A record from before states were kept reads as ``started`` with a SID, else ``sending`` (it may
        have been sent).
        """
        if not isinstance(value, dict) or not isinstance(value.get("call_sid"), str):
            return None
        recording_sid = _str_or_none(value.get("recording_sid"))
        state = value.get("state")
        if state not in STATES:
            state = "started" if recording_sid else "sending"
        return cls(
            call_sid=value["call_sid"],
            state=str(state),
            snapshot=_strings(value.get("snapshot")),
            tokens=_strings(value.get("tokens")),
            recording_sid=recording_sid,
            stop_requested=_str_or_none(value.get("stop_requested")),
            stopped_by=_str_or_none(value.get("stopped_by")),
        )


def _strings(value: object) -> list[str]:
    return [str(item) for item in value] if isinstance(value, list) else []


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
        """The memory of the running task, or ``None`` where Airflow gives it no task state store."""
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


class StoredJournal:
    """A start's attempts, written to the task state store before they happen (a ``StartJournal``).

    :param memory: the task's memory.
    :param record: the record so far (``prepared``).
    """

    def __init__(self, memory: StartMemory, record: StartRecord) -> None:
        self.memory = memory
        self.record = record

    def sending(self, token: str | None) -> None:
        """Stored before the POST: a worker dying from here on leaves ``sending`` (and the token)."""
        tokens = self.record.tokens
        if token and token not in tokens:
            tokens = [*tokens, token]
        self.record = self.memory.update(self.record, state="sending", tokens=tokens)

    def refused(self, error: TelnyxApiError) -> None:
        """A definite no: nothing started."""
        self.record = self.memory.update(self.record, state="refused")

    def reply_lost(self, error: TelnyxApiError) -> None:
        """The POST may have started a recording."""
        self.record = self.memory.update(self.record, state="reply_lost")

    def started(self, recording_sid: str) -> StartRecord:
        """The recording is known."""
        self.record = self.memory.update(self.record, state="started", recording_sid=recording_sid)
        return self.record


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
