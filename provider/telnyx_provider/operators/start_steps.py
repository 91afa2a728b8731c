"""The start operator's first half: carry on with an earlier try's recording, or start one, journalled.

Every step is written to the task state store (:mod:`~telnyx_provider.operators.start_memory`) before it
happens, so a worker that dies between any two lines leaves its retry what it needs; what a retry does
with an earlier try's record is :mod:`~telnyx_provider.operators.recording_retry`'s. The operator keeps the
second half: announcing the recording, waiting for it, stopping it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from telnyx_provider._compat import AirflowFailException
from telnyx_provider.operators.recording_retry import Restart, Resumed, carry_on
from telnyx_provider.operators.start_arguments import RECORDING_PARAMETERS
from telnyx_provider.operators.start_memory import StartRecord, StoredJournal

if TYPE_CHECKING:
    from collections.abc import Mapping

    from telnyx_provider.hooks.recording import RecordingHook
    from telnyx_provider.operators.start_memory import StartMemory
    from telnyx_provider.params import StartRecordingParams

#: Why a retry without a task state store refuses (Airflow 3.1/3.2).
NO_STATE_STORE = (
    "This is a retry of a recording start, and Airflow gives this task no task state store (Airflow 3.3+), "
    "so whether an earlier try started a recording cannot be known: not starting another (it could record "
    "the call twice)."
)


@dataclass
class TaskStart:
    """One try's start of the recording.

    :param hook: the operator's hook.
    :param memory: the task's durable memory, ``None`` where Airflow has no task state store.
    :param call_sid: the call.
    :param account_sid: the account (``None``: the connection's).
    :param exact_start: the operator's ``exact_start``.
    """

    hook: RecordingHook
    memory: StartMemory | None
    call_sid: str
    account_sid: str | None
    exact_start: bool | None
    #: The stored record as this try last wrote or read it.
    record: StartRecord | None = None
    #: How to start anew (the snapshot and tokens an earlier try leaves).
    restart: Restart | None = None

    def earlier_try(
        self, context: Mapping[str, Any], params: StartRecordingParams
    ) -> tuple[dict[str, Any] | None, bool]:
        """An earlier try's recording and whether it is final, or ``(None, False)`` to start one.

        :raises ~airflow.sdk.exceptions.AirflowFailException: a retry without a task state store (it cannot
            know what the earlier try started).
        """
        self.restart = Restart()
        if self.memory is None:
            ti = context.get("ti")
            if ti is not None and getattr(ti, "try_number", 1) > 1:
                raise AirflowFailException(NO_STATE_STORE)
            return None, False
        record = self.memory.load()
        if record is None or record.call_sid != self.call_sid:
            return None, False
        self.record = record
        outcome = carry_on(
            self.hook, self.memory, record, params, account_sid=self.account_sid, exact_start=self.exact_start
        )
        if isinstance(outcome, Restart):
            self.restart = outcome
            return None, False
        assert isinstance(outcome, Resumed)
        self.record = self.memory.update(
            self.memory.load() or record,
            state="started",
            recording_sid=outcome.recording["sid"],
            stop_requested=None,
            stopped_by=None,
        )
        return outcome.recording, outcome.final

    def start(self, params: StartRecordingParams) -> dict[str, Any]:
        """Start a new recording, each step stored before it happens; returns it."""
        from telnyx_provider.exact_start import exact_start_for

        restart = self.restart or Restart()
        arguments = {name: getattr(params, name) for name in RECORDING_PARAMETERS}
        start = {"account_sid": self.account_sid, "exact_start": self.exact_start, **arguments}
        if self.memory is None:
            return self.hook.start_call_recording(self.call_sid, **start)
        exact = exact_start_for(params, self.exact_start, self.hook.config.receiver_url)
        snapshot: list[str] = []
        if exact is None:
            snapshot = (
                restart.snapshot
                if restart.snapshot is not None
                else self.hook.call_recording_sids(self.call_sid, account_sid=self.account_sid)
            )
        # Stored before anything is sent: a worker that dies at any point after this line leaves its retry
        # what it needs (the snapshot, then each attempt's state and token) to find what the start did.
        record = self.memory.save(
            StartRecord(call_sid=self.call_sid, snapshot=list(snapshot), tokens=list(restart.tokens))
        )
        journal = StoredJournal(self.memory, record)
        recording = self.hook.start_call_recording(
            self.call_sid, snapshot=snapshot, journal=journal, start_tokens=restart.tokens, **start
        )
        self.record = journal.started(recording["sid"])
        return recording
